// Display helpers. Money stays the API's exact decimal string; it is never re-computed here.

export const money = (amounts) => {
  const parts = Object.entries(amounts ?? {}).map(([currency, value]) => `${currency} ${value}`);
  return parts.length ? parts.join(" · ") : "–";
};

export const when = (iso) => iso.replace("T", " ").replace(/\.\d+/, "").replace(/Z$/, "");

export const day = (iso) => iso.slice(0, 10);

// Fills a <tbody> with one row per item; cells are text (or a node), never HTML.
export function fillRows(tbody, items, cells, empty = "Nothing here yet.") {
  const rows = items.map((item) => {
    const tr = document.createElement("tr");
    for (const cell of cells(item)) {
      const td = document.createElement("td");
      td.append(cell instanceof Node ? cell : document.createTextNode(String(cell)));
      tr.append(td);
    }
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = tbody.closest("table").tHead.rows[0].cells.length;
    td.textContent = empty;
    tr.append(td);
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
}

export function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}
