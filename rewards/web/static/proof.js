// Verifies a payout's Merkle proof in the browser, by the README's rules: a leaf hashes as
// SHA-256(0x00 || JSON [holder, season, version, amount]) with no spaces, an inner node as
// SHA-256(0x01 || left || right). In proof format 2 the holder is the commitment
// SHA-256(salt || owner_id), checked here from the owner_id and salt the proof carries; in
// format 1 it is the owner_id. The amount is used as its exact decimal text (it can be
// larger than a JavaScript number holds).
"use strict";

async function sha256(parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const p of parts) { bytes.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(text) {
  if (!/^[0-9a-f]{64}$/.test(text)) throw new Error("not a SHA-256 in hex");
  return new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
}

async function commitmentMatches(data) {
  if (!data.format) return true; // format 1: the leaf names the owner itself
  if (data.format !== "ignition-rewards-proof/2") return false;
  const salt = fromHex(data.salt);
  const made = await sha256([salt, new TextEncoder().encode(data.owner_id)]);
  return hex(made) === data.leaf[0];
}

async function verifyProof(data) {
  const [owner, season, version] = data.leaf;
  if (!/^\d+$/.test(data.amount_text)) return false;
  if (!(await commitmentMatches(data))) return false;
  const leaf = "[" + JSON.stringify(owner) + "," + JSON.stringify(season) + "," +
    String(version) + "," + data.amount_text + "]";
  let current = await sha256([new Uint8Array([0]), new TextEncoder().encode(leaf)]);
  for (const step of data.proof) {
    const sibling = fromHex(step.sibling);
    if (step.side === "left") current = await sha256([new Uint8Array([1]), sibling, current]);
    else if (step.side === "right") current = await sha256([new Uint8Array([1]), current, sibling]);
    else return false;
  }
  return hex(current) === data.root;
}

for (const section of document.querySelectorAll("section.payout")) {
  const button = section.querySelector("button.verify");
  const verdict = section.querySelector("output.verdict");
  const source = section.querySelector("script.proof-data");
  if (!button || !verdict || !source) continue;
  button.addEventListener("click", async () => {
    if (!window.crypto || !crypto.subtle) {
      verdict.textContent = "This browser cannot hash here (the page must be served over https or from localhost).";
      return;
    }
    try {
      const data = JSON.parse(source.textContent);
      const ok = await verifyProof(data);
      verdict.dataset.verified = ok ? "yes" : "no";
      verdict.textContent = ok
        ? "Verified: this proof leads from your payout to the published root " + data.root.slice(0, 16) + "…"
        : "Does not verify: this proof does not lead to the published root.";
    } catch (error) {
      verdict.dataset.verified = "no";
      verdict.textContent = "Does not verify: " + error.message;
    }
  });
}
