// Marks each horizontally scrolling region that holds more than fits (a wide table on a
// phone), so that the stylesheet says "scroll sideways for more" above it; rechecked when
// the window changes size. The first column of a table stays in view (app.css).
"use strict";

function markOverflow() {
  for (const region of document.querySelectorAll(".scroll")) {
    const more = region.scrollWidth > region.clientWidth + 1;
    region.classList.toggle("overflowing", more);
    if (more && !region.hasAttribute("tabindex")) {
      region.setAttribute("tabindex", "0"); // keyboard users can scroll it too
      region.setAttribute("role", "region");
      region.setAttribute("aria-label", "Table, scrolls sideways");
    }
  }
}

window.addEventListener("resize", markOverflow);
markOverflow();
