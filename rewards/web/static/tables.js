// Marks each horizontally scrolling region that holds more than fits (a wide table or chart
// on a phone), so that the stylesheet says "scroll sideways for more" above a table, and
// makes it reachable from the keyboard; rechecked when the window changes size. The first
// column of a table stays in view (app.css).
"use strict";

function markOverflow() {
  for (const region of document.querySelectorAll(".scroll, .chart-box")) {
    const more = region.scrollWidth > region.clientWidth + 1;
    region.classList.toggle("overflowing", more);
    if (more && !region.hasAttribute("tabindex")) {
      region.setAttribute("tabindex", "0"); // keyboard users can scroll it too
      region.setAttribute("role", "region");
      const what = region.classList.contains("chart-box") ? "Chart" : "Table";
      region.setAttribute("aria-label", what + ", scrolls sideways");
    }
  }
}

window.addEventListener("resize", markOverflow);
markOverflow();
