// The daily chart, drawn by the vendored uPlot: purchases (left axis) and revenue per currency
// (right axis), one point per day of the range.

import uPlot from "/static/vendor/uplot/uPlot.esm.js";

const COLOURS = ["#1f5fbf", "#c2410c", "#15803d", "#7e22ce", "#be123c", "#0e7490"];
let plot = null;

// Days are dated by the API in the chosen time zone; they are plotted at UTC midnight and
// labelled in UTC, so each point shows exactly the date the API gave.
const dayStamp = (iso) => Date.UTC(+iso.slice(0, 4), +iso.slice(5, 7) - 1, +iso.slice(8, 10)) / 1000;

export function drawChart(container, days, currencies) {
  const data = [
    days.map((d) => dayStamp(d.date)),
    days.map((d) => d.purchases),
    ...currencies.map((c) => days.map((d) => Number(d.revenue[c] ?? 0))),
  ];
  const series = [
    {},
    { label: "Purchases", stroke: COLOURS[0], width: 2, scale: "count", points: { show: true } },
    ...currencies.map((c, i) => ({
      label: `Revenue ${c}`,
      stroke: COLOURS[(i + 1) % COLOURS.length],
      width: 2,
      scale: "money",
      points: { show: true },
    })),
  ];
  const width = Math.max(280, container.clientWidth || 600);
  const options = {
    width,
    height: width < 500 ? 220 : 300,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true }, count: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
    axes: [
      {},
      { scale: "count", label: "Purchases" },
      { scale: "money", side: 1, label: "Revenue", grid: { show: false } },
    ],
    series,
  };
  plot?.destroy();
  plot = new uPlot(options, data, container);
  container.dataset.points = String(data[0].length);
  return plot;
}
