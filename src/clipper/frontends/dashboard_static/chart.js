// Small line charts on <canvas>: a few series over time, a y axis from zero, optional limit lines
// (an SLO, a queue bound). Written for this dashboard; no library.

const AXIS = "#8a94a6";
const GRID = "rgba(138, 148, 166, 0.18)";
const FONT = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";

/** A rounded-up axis top: 1, 2 or 5 times a power of ten. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

/** A number short enough for an axis label: 1.2k, 35, 0.25. */
export function shortNumber(value) {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  if (abs >= 10 || abs === 0) return `${Math.round(value)}`;
  return `${+value.toPrecision(2)}`;
}

/**
 * Draw `series` ([{label, color, points: [[t_s, value|null], ...]}]) over the last `spanS` seconds
 * ending at `nowS`; `limits` ([{label, color, value}]) are dashed horizontal lines. A limit far above the
 * data (an SLO of a second over latencies of a few ms) does not flatten the lines: it is named at the top.
 */
export function drawChart(canvas, { series, limits = [], nowS, spanS = 120, unit = "", fixedMax = null }) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = FONT;

  const left = 44;
  const right = 8;
  const top = 8;
  const bottom = 18;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const startS = nowS - spanS;

  let top_value = 0;
  for (const s of series) {
    for (const [t, v] of s.points) if (t >= startS && v != null && v > top_value) top_value = v;
  }
  const near = limits.filter((l) => l.value != null && (top_value === 0 || l.value <= top_value * 4));
  for (const limit of near) top_value = Math.max(top_value, limit.value);
  const yMax = fixedMax ?? niceMax(top_value * 1.1);
  const x = (t) => left + ((t - startS) / spanS) * plotW;
  const y = (v) => top + plotH - (Math.min(v, yMax) / yMax) * plotH;

  // Grid and y labels.
  ctx.strokeStyle = GRID;
  ctx.fillStyle = AXIS;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    const py = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(left, py);
    ctx.lineTo(left + plotW, py);
    ctx.stroke();
    ctx.fillText(shortNumber(v) + (i === 4 ? unit : ""), left - 6, py);
  }
  // Time labels: seconds ago.
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const [ago, align] of [[spanS, "left"], [spanS / 2, "center"], [0, "right"]]) {
    ctx.textAlign = align;
    ctx.fillText(ago === 0 ? "now" : `-${Math.round(ago)}s`, x(nowS - ago), top + plotH + 4);
  }

  // Limit lines, dashed, labelled at the right.
  ctx.setLineDash([5, 4]);
  ctx.textAlign = "right";
  ctx.textBaseline = "bottom";
  for (const limit of limits) {
    if (limit.value == null) continue;
    if (limit.value > yMax) {
      ctx.fillStyle = limit.color;
      ctx.textBaseline = "top";
      ctx.fillText(`${limit.label} ↑`, left + plotW - 2, top + 2);
      ctx.textBaseline = "bottom";
      continue;
    }
    const py = Math.round(y(limit.value)) + 0.5;
    ctx.strokeStyle = limit.color;
    ctx.beginPath();
    ctx.moveTo(left, py);
    ctx.lineTo(left + plotW, py);
    ctx.stroke();
    ctx.fillStyle = limit.color;
    ctx.fillText(limit.label, left + plotW - 2, py - 2);
  }
  ctx.setLineDash([]);

  // Series: gaps where a value is missing.
  ctx.lineWidth = 1.75;
  ctx.lineJoin = "round";
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    let drawing = false;
    for (const [t, v] of s.points) {
      if (t < startS || v == null) {
        drawing = false;
        continue;
      }
      if (drawing) ctx.lineTo(x(t), y(v));
      else ctx.moveTo(x(t), y(v));
      drawing = true;
    }
    ctx.stroke();
  }
}
