'use strict'
// SVG grouped bar charts for the benchmark report, written by hand so that the suite needs
// no plotting package: one or more panels side by side, each a set of groups (x) with one
// bar per series.

const { fmt } = require('./common')

const escapeXml = (s) =>
  String(s).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c])

// The smallest 1, 2, 2.5 or 5 × 10^k at or above x: round axis ends.
function niceMax(x) {
  if (!(x > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(x))
  return [1, 2, 2.5, 5, 10].map((k) => k * p).find((v) => v >= x)
}

/**
 * panels: [{ title, yLabel, xLabel? or note?, series: [{ key, label, color }],
 *            groups: [{ label, values: { [key]: number | null } }] }]
 * A null or missing value draws no bar (not measured); the group label says so in the title
 * tooltip. Returns the SVG text.
 */
function groupedBars({ title, subtitle, panels, panelWidth = 460, height = 420 }) {
  const M = { left: 64, right: 16, top: 110, bottom: 56 }
  const W = panels.length * panelWidth
  const ph = height - M.top - M.bottom
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${height}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${escapeXml(subtitle)}</text>`,
  ]
  panels.forEach((panel, p) => {
    const left = p * panelWidth + M.left
    const pw = panelWidth - M.left - M.right
    const values = panel.groups.flatMap((g) => panel.series.map((s) => g.values[s.key] ?? 0))
    const top = niceMax(Math.max(0, ...values) * 1.12)
    const y = (v) => +(M.top + ph - (v / top) * ph).toFixed(1)
    const group = pw / panel.groups.length
    const bar = +Math.min(48, (group * 0.8) / panel.series.length).toFixed(1)
    out.push(
      `<text x="${left + pw / 2}" y="62" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(panel.title)}</text>`,
    )
    // Legend: one row under the panel title.
    let lx = left
    for (const s of panel.series) {
      out.push(
        `<rect x="${lx}" y="74" width="12" height="12" fill="${s.color}"/>`,
        `<text x="${lx + 16}" y="84" font-size="11">${escapeXml(s.label)}</text>`,
      )
      lx += 22 + s.label.length * 6.2
    }
    for (let i = 0; i <= 5; i++) {
      const v = (top * i) / 5
      out.push(
        `<line x1="${left}" x2="${left + pw}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
        `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v, top < 10 ? 1 : 0)}</text>`,
      )
    }
    panel.groups.forEach((g, gi) => {
      const present = panel.series.filter((s) => g.values[s.key] != null)
      const x0 = left + gi * group + (group - bar * present.length) / 2
      present.forEach((s, k) => {
        const v = g.values[s.key]
        const x = +(x0 + k * bar).toFixed(1)
        const label = v >= 100 ? fmt(v, 0) : fmt(v, 1)
        out.push(
          `<rect x="${x}" y="${y(Math.max(v, 0))}" width="${bar - 3}" height="${Math.abs(y(0) - y(v)).toFixed(1)}" fill="${s.color}"><title>${escapeXml(`${s.label}, ${g.label}: ${fmt(v)}`)}</title></rect>`,
          `<text x="${+(x + (bar - 3) / 2).toFixed(1)}" y="${y(Math.max(v, 0)) - 4}" text-anchor="middle" font-size="10">${label}</text>`,
        )
      })
      out.push(
        `<text x="${+(left + gi * group + group / 2).toFixed(1)}" y="${M.top + ph + 18}" text-anchor="middle">${escapeXml(g.label)}</text>`,
      )
    })
    out.push(
      `<line x1="${left}" x2="${left + pw}" y1="${y(0)}" y2="${y(0)}" stroke="#333"/>`,
      `<line x1="${left}" x2="${left}" y1="${M.top}" y2="${M.top + ph}" stroke="#333"/>`,
      `<text transform="translate(${left - 46} ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(panel.yLabel)}</text>`,
    )
    if (panel.note) {
      out.push(
        `<text x="${left + pw / 2}" y="${height - 16}" text-anchor="middle" font-size="11" fill="#555">${escapeXml(panel.note)}</text>`,
      )
    } else if (panel.xLabel) {
      out.push(
        `<text x="${left + pw / 2}" y="${height - 16}" text-anchor="middle" font-size="12">${escapeXml(panel.xLabel)}</text>`,
      )
    }
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

module.exports = { groupedBars }
