/* Settings › Integrations: the cards follow their connections without a reload, and buttons say
   that they are working. A static file (the CSP allows no inline script). */
(function () {
  "use strict";
  var cards = document.querySelector(".cards[data-refresh]");
  if (!cards) { return; }

  // What a card shows that can change on its own: the status, the checklist's ticks and its
  // alerts (a warning appearing, or clearing once its cause is gone).
  function shape(card) {
    return card.status + "|" + (card.steps || []).map(function (s) { return s.done ? "1" : "0"; }).join("")
      + "|" + (card.alerts || []).map(function (a) { return a.message; }).join("\n");
  }
  function shown(el) {
    var ticks = Array.prototype.map.call(el.querySelectorAll(".checklist .step"), function (li) {
      return li.classList.contains("done") ? "1" : "0";
    });
    var alerts = Array.prototype.map.call(el.querySelectorAll(".alert"), function (p) {
      return p.getAttribute("data-message");
    });
    return el.getAttribute("data-status") + "|" + ticks.join("") + "|" + alerts.join("\n");
  }

  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    fetch(cards.getAttribute("data-refresh"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body || busy) { return; }
        var changed = body.data.some(function (card) {
          var el = document.getElementById("integration-" + card.key);
          return el && shown(el) !== shape(card);
        });
        if (changed) { window.location.reload(); }  // the server renders the new card
      })
      .catch(function () { /* offline for a moment: the next poll tries again */ });
  }
  // Quick while a connection is being set up, then while a connected card has steps to tick,
  // slow once every card is settled (or waits for someone to click Connect).
  function every(test) {
    return Array.prototype.some.call(document.querySelectorAll(".card"), test);
  }
  var period = every(function (el) { return el.getAttribute("data-status") === "Setting up…"; }) ? 2000
    : every(function (el) { return el.getAttribute("data-status") === "Active" && el.querySelector(".step.todo"); })
      ? 5000 : 15000;
  window.setInterval(refresh, period);

  document.addEventListener("submit", function (event) {
    var button = event.target.querySelector("button[type=submit]");
    if (!button) { return; }
    busy = true;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    button.textContent = button.getAttribute("data-busy") || "Working…";
  });
})();
