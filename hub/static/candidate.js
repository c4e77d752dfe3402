/* The candidate's test pages: times in the candidate's own time zone, a countdown while the test
   runs, and a confirmation before the one submission. A static file (the CSP allows no inline
   script); without it the pages still work and say every time in UTC. */
(function () {
  "use strict";

  // Each <time datetime="…Z"> shown in UTC by the server, rewritten in the browser's time zone.
  var format = { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
                 timeZoneName: "short" };
  Array.prototype.forEach.call(document.querySelectorAll("time.local[datetime]"), function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when)) {
      el.textContent = when.toLocaleString(undefined, format);
      el.setAttribute("data-local", "1");
    }
  });

  // The time left, each second, until the deadline of the running test.
  var clock = document.querySelector("[data-deadline]");
  if (clock) {
    var deadline = new Date(clock.getAttribute("data-deadline"));
    var out = clock.querySelector(".time-left");
    var tick = function () {
      var left = Math.max(0, Math.floor((deadline - new Date()) / 1000));
      var minutes = Math.floor(left / 60), seconds = left % 60;
      out.textContent = left > 0 ? minutes + ":" + (seconds < 10 ? "0" : "") + seconds : "time is up";
      clock.classList.toggle("urgent", left > 0 && left <= 120);
      if (left > 0) { setTimeout(tick, 1000 - (Date.now() % 1000)); }
    };
    clock.hidden = false;
    tick();
  }

  // Submit once, knowingly: how many questions are still unanswered.
  var form = document.querySelector("form.candidate-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      var questions = form.querySelectorAll("fieldset.question");
      var open = Array.prototype.filter.call(questions, function (q) {
        return !q.querySelector("input:checked");
      }).length;
      var message = "Submit your answers now? You can submit only once.";
      if (open > 0) {
        // The verb agrees with the unanswered count: "1 of 5 questions is unanswered".
        message = open + " of " + questions.length + " question" + (questions.length === 1 ? "" : "s")
          + (open === 1 ? " is" : " are") + " unanswered. " + message;
      }
      if (!window.confirm(message)) { event.preventDefault(); }
    });
  }
}());
