// fraudlens console: keyboard navigation and live refresh of the review
// queue. Progressive: every page works without this script.
"use strict";

(function () {
  const rows = () => Array.from(document.querySelectorAll("table.queue tbody tr[data-href]"));
  let current = -1;

  function focusRow(index) {
    const all = rows();
    if (all.length === 0) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((row, i) => row.classList.toggle("current", i === current));
    const link = all[current].querySelector("td.id a");
    if (link) link.focus({ preventScroll: false });
  }

  function typing(target) {
    return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const all = rows();
    if (event.key === "/") {
      const filter = document.getElementById("f-entity");
      if (filter) {
        event.preventDefault();
        const box = document.getElementById("filters");
        if (box) box.open = true;
        filter.focus();
      }
      return;
    }
    if (all.length === 0) return;
    if (current < 0) {
      const focused = all.findIndex((row) => row.contains(document.activeElement));
      current = focused;
    }
    if (event.key === "j") { event.preventDefault(); focusRow(current + 1); }
    else if (event.key === "k") { event.preventDefault(); focusRow(current < 0 ? 0 : current - 1); }
    else if (current >= 0 && (event.key === "o" || (event.key === "Enter" && event.target.tagName !== "A"))) {
      event.preventDefault();
      window.location.assign(all[current].dataset.href);
    } else if (event.key === "x" && current >= 0) {
      event.preventDefault();
      const box = all[current].querySelector("input[type=checkbox]");
      if (box) box.checked = !box.checked;
    }
  });

  document.addEventListener("change", (event) => {
    if (event.target && event.target.id === "select-all") {
      rows().forEach((row) => {
        const box = row.querySelector("input[type=checkbox]");
        if (box) box.checked = event.target.checked;
      });
    }
  });

  // on a phone the filters start folded, unless one is set
  const filters = document.getElementById("filters");
  if (filters && window.matchMedia("(max-width: 760px)").matches) {
    const set = Array.from(filters.querySelectorAll("input")).some((input) => input.value !== "");
    if (!set) filters.open = false;
  }

  // live refresh: how many cases were flagged since this page was drawn
  const live = document.getElementById("live");
  if (live) {
    let after = live.dataset.after || "0";
    const start = after;
    let seen = 0;
    async function poll() {
      try {
        const response = await fetch(`/ui/queue/updates?after=${encodeURIComponent(after)}`, {
          headers: { Accept: "application/json" },
          credentials: "same-origin",
        });
        if (response.status === 401) { window.location.assign("/ui/login"); return; }
        if (!response.ok) return;
        const update = await response.json();
        after = String(update.last_seq);
        seen += update.new_pending;
        if (seen > 0 && after !== start) {
          live.textContent = "";
          const link = document.createElement("a");
          link.href = window.location.pathname + window.location.search.replace(/([?&])(cursor|done)=[^&]*/g, "$1");
          link.textContent = `${seen} new case${seen === 1 ? "" : "s"} — show`;
          live.appendChild(link);
        }
      } catch (_) {
        // the server is restarting or the network is down: try again later
      }
    }
    setInterval(poll, 5000);
  }
})();
