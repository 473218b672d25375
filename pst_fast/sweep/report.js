// Sorting and filtering of a pst_fast sweep report's table (no dependencies, no network).
// Rows carry data-dataset, data-attack and data-model; every cell of a defense column carries data-defense;
// a sortable cell carries data-v (a number, or "" when the grid has no value there: sorted last).
document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table.grid");
  if (!table) return;
  const body = table.tBodies[0], heads = [...table.tHead.rows[0].cells];
  const filters = [...document.querySelectorAll("select[data-filter]")];
  const shown = document.getElementById("shown");

  function filter() {
    const want = Object.fromEntries(filters.map((f) => [f.dataset.filter, f.value]));
    for (const row of body.rows)
      row.hidden = ["dataset", "attack", "model"].some((k) => want[k] && row.dataset[k] !== want[k]);
    for (const cell of table.querySelectorAll("[data-defense]"))
      cell.hidden = Boolean(want.defense) && cell.dataset.defense !== want.defense;
    if (shown) shown.textContent = [...body.rows].filter((r) => !r.hidden).length + " of " + body.rows.length + " rows shown";
  }

  function key(row, i) {
    const cell = row.cells[i];
    if (cell.dataset.v === undefined) return cell.textContent.trim();
    return cell.dataset.v === "" ? null : Number(cell.dataset.v);
  }

  function sort(i) {
    const dir = heads[i].dataset.dir === "asc" ? "desc" : "asc";
    heads.forEach((h) => delete h.dataset.dir);
    heads[i].dataset.dir = dir;
    const sign = dir === "asc" ? 1 : -1;
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a, i), y = key(b, i);
      if (x === null || y === null) return (x === null) - (y === null);  // missing values last either way
      return sign * (typeof x === "number" ? x - y : x.localeCompare(y));
    });
    body.append(...rows);
  }

  filters.forEach((f) => f.addEventListener("change", filter));
  heads.forEach((h, i) => h.addEventListener("click", () => sort(i)));
  filter();
});
