// The pack's only script: filter, search and sort the ranked list, open a person's card.
// Values are read from data attributes and written with textContent: nothing becomes markup.
(function () {
  "use strict";
  var table = document.getElementById("ranked-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var area = document.getElementById("f-area"), cohort = document.getElementById("f-cohort");
  var type = document.getElementById("f-type"), search = document.getElementById("f-search");
  var count = document.getElementById("ranked-count");

  function apply() {
    var a = area.value, c = cohort.value, t = type.value, s = search.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (row) {
      var ok = (!a || row.getAttribute("data-area") === a) &&
        (!c || row.getAttribute("data-cohort").split(" ").indexOf(c) >= 0) &&
        (!t || row.getAttribute("data-type") === t) &&
        (!s || row.getAttribute("data-search").indexOf(s) >= 0);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " shown";
  }
  [area, cohort, type].forEach(function (el) { el.addEventListener("change", apply); });
  search.addEventListener("input", apply);

  // A cell may sort by its data-value (a probability shown as "over 99%") rather than its text.
  function sortKey(cell) {
    var value = cell.getAttribute("data-value");
    return value !== null ? value : cell.textContent.trim();
  }
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  headers.forEach(function (th, index) {
    var button = th.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var numeric = button.getAttribute("data-sort") === "num";
      rows.sort(function (x, y) {
        var p = sortKey(x.cells[index]), q = sortKey(y.cells[index]), r;
        if (numeric) {
          var pn = p === "" ? -Infinity : parseFloat(p), qn = q === "" ? -Infinity : parseFloat(q);
          r = pn - qn;
        } else { r = p.localeCompare(q); }
        if (r === 0) { r = parseInt(x.cells[0].textContent, 10) - parseInt(y.cells[0].textContent, 10); }
        return descending ? -r : r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });

  function openCard(key, focus) {
    var card = document.getElementById("card-" + key);
    if (!card) { return; }
    Array.prototype.forEach.call(document.querySelectorAll(".card.open"), function (c) { c.classList.remove("open"); });
    rows.forEach(function (row) { row.classList.toggle("selected", row.getAttribute("data-key") === key); });
    card.classList.add("open");
    if (focus) { card.focus(); card.scrollIntoView({block: "start"}); }
  }
  body.addEventListener("click", function (event) {
    var row = event.target.closest("tr");
    if (!row) { return; }
    event.preventDefault();
    var key = row.getAttribute("data-key");
    if (window.history && window.history.replaceState) { window.history.replaceState(null, "", "#card-" + key); }
    openCard(key, true);
  });
  window.addEventListener("hashchange", function () {
    if (location.hash.indexOf("#card-") === 0) { openCard(location.hash.slice(6), true); }
  });
  if (location.hash.indexOf("#card-") === 0) { openCard(location.hash.slice(6), false); }
  var all = document.getElementById("show-all");
  if (all) {
    all.addEventListener("click", function () {
      var section = document.getElementById("cards");
      var on = section.classList.toggle("all");
      all.textContent = on ? "Show only the selected card" : "Show every card";
    });
  }
}());
