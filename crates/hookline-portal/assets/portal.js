// Progressive enhancement of the Hookline developer portal: every page works
// without this file. It shows the copy buttons next to secrets and code.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  if (!navigator.clipboard) {
    return;
  }
  for (const button of document.querySelectorAll("button.copy[data-copy-target]")) {
    const target = document.getElementById(button.dataset.copyTarget);
    if (!target) {
      continue;
    }
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = "value" in target ? target.value : target.textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Copy failed; select the text instead";
      }
      setTimeout(() => {
        button.textContent = "Copy";
      }, 2000);
    });
  }
});
