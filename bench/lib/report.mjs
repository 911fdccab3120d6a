// Presents one bench run: the stdout table, the JSON results file and a hand-written SVG bar chart.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

const fmtInt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
const fmtMs = (n) => (Number.isFinite(n) ? n.toFixed(2) : '-');
const fmtRatio = (n) => (Number.isFinite(n) ? n.toFixed(2) : '-');

/** `pass`, `FAIL`, `n/a` (no budget or not judged) or `BROKEN` for one result row. */
export function verdict(r) {
  if (r.status !== 'ok') return 'BROKEN';
  if (r.pass === true) return 'pass';
  if (r.pass === false) return 'FAIL';
  return 'n/a';
}

function budgetText(r) {
  if (r.budget === null || r.budget === undefined) return '-';
  return r.budgetKind === 'max' ? `<= ${r.budget.toFixed(2)}` : `>= ${r.budget.toFixed(2)}`;
}

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** The human-readable summary printed at the end of a run. */
export function formatTable(results) {
  const out = [];
  const rows = results.cases.map((r) => [
    r.title,
    fmtInt(r.reqPerSec),
    fmtMs(r.p50Ms),
    fmtMs(r.p99Ms),
    r.ratioTo
      ? `${fmtRatio(r.ratio)} ${r.metric === 'rps' ? 'req/s' : 'cpu'} of ${r.ratioTo}`
      : fmtRatio(r.ratio),
    budgetText(r),
    verdict(r),
    Number.isFinite(r.cpuUsPerReq) ? r.cpuUsPerReq.toFixed(1) : '-',
    r.rounds?.length ?? 0,
    r.pinning,
  ]);
  if (rows.length > 0) {
    out.push(
      table(
        ['case', 'req/s', 'p50 ms', 'p99 ms', 'ratio', 'budget', 'result', 'cpu µs/req', 'rounds', 'pinning'],
        rows,
      ),
    );
  }
  if (results.memory) {
    const m = results.memory;
    out.push('');
    out.push(
      table(
        ['memory after load', 'requests', 'RSS before', 'RSS MiB', 'ratio', 'budget', 'result'],
        m.rows.map((r) => [
          r.title,
          fmtInt(r.requests),
          Number.isFinite(r.rssIdleMiB) ? r.rssIdleMiB.toFixed(1) : '-',
          Number.isFinite(r.rssMiB) ? r.rssMiB.toFixed(1) : '-',
          fmtRatio(r.ratio),
          budgetText(r),
          verdict(r),
        ]),
      ),
    );
  }
  if (results.soak) {
    const s = results.soak;
    out.push('');
    out.push(
      `soak (${s.minutes} min, ${fmtInt(s.reqPerSec)} req/s): median RSS MiB per minute ${s.samples
        .map((x) => x.rssMiB.toFixed(1))
        .join(' ')}`,
    );
    out.push(
      `  minute 2 -> minute ${s.minutes}: ${fmtRatio(s.growth)}× (budget <= ${s.budget.toFixed(2)}) ${verdict(s)}`,
    );
  }
  for (const r of [...results.cases, ...(results.memory?.rows ?? [])]) {
    if (r.status !== 'ok') out.push(`BROKEN ${r.id}: ${r.error}`);
  }
  for (const n of results.notes) out.push(`note: ${n}`);
  return out.join('\n');
}

const esc = (s) =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );

const COLOUR = { pass: '#2e7d32', FAIL: '#c62828', 'n/a': '#90a4ae', BROKEN: '#c62828', baseline: '#37474f' };

/** Chart sections: req/s per case, then RSS after the 1M-request load, then RSS per soak minute. */
function chartSections(results) {
  const sections = [];
  if (results.cases.length > 0) {
    sections.push({
      title: 'requests per second (wrk, higher is better)',
      rows: results.cases.map((c) => {
        const v = verdict(c);
        const ratio = Number.isFinite(c.ratio) && c.ratioTo ? ` · ${fmtRatio(c.ratio)}× ${c.ratioTo}` : '';
        return {
          label: c.title,
          value: c.reqPerSec,
          fill: v === 'n/a' && !c.ratioTo ? COLOUR.baseline : COLOUR[v],
          text:
            v === 'BROKEN'
              ? 'BROKEN (no numbers)'
              : `${fmtInt(c.reqPerSec)} req/s · p99 ${fmtMs(c.p99Ms)} ms${ratio}${c.budget ? ` (${budgetText(c)})` : ''}`,
        };
      }),
    });
  }
  if (results.memory) {
    sections.push({
      title: `RSS after ${fmtInt(results.memory.targetRequests)} requests (MiB, lower is better)`,
      rows: results.memory.rows.map((r, i) => {
        const v = verdict(r);
        return {
          label: r.title,
          value: r.rssMiB,
          fill: i === 0 && v !== 'BROKEN' ? COLOUR.baseline : COLOUR[v],
          text:
            v === 'BROKEN'
              ? 'BROKEN (no numbers)'
              : `${r.rssMiB.toFixed(1)} MiB${i > 0 ? ` · ${fmtRatio(r.ratio)}× (${budgetText(r)})` : ''}`,
        };
      }),
    });
  }
  if (results.soak?.samples) {
    const s = results.soak;
    sections.push({
      title: `soak: median RSS per minute under load (MiB), ${fmtInt(s.reqPerSec)} req/s · minute ${s.minutes} / minute 2 = ${fmtRatio(s.growth)}× (<= ${s.budget})`,
      rows: s.samples.map((x) => ({
        label: `minute ${x.minute}`,
        value: x.rssMiB,
        fill: x.minute === 2 || x.minute === s.minutes ? COLOUR[verdict(s)] : COLOUR['n/a'],
        text: `${x.rssMiB.toFixed(1)} MiB`,
      })),
    });
  }
  return sections;
}

/** Horizontal bar charts of the run, coloured by verdict; readable without any tooling. */
export function renderSvg(results) {
  const labelW = 330;
  const barW = 420;
  const width = labelW + barW + 300;
  const rowH = 30;
  const m = results.machine;
  const legend = results.check?.judged
    ? 'green = within budget, red = missed or broken, dark = baseline, light = no budget'
    : 'not judged (quick mode) · dark = baseline, red = broken';
  const parts = [
    `<text x="10" y="24" font-size="17" font-weight="bold">gatehouse /oauth2/auth benchmark (${esc(results.mode)} run)</text>`,
    `<text x="10" y="46" fill="#555">${esc(results.date)} · ${esc(m.cpuModel)} × ${m.cores} · node ${esc(m.node)} · wrk -t${results.settings.threads} -c${results.settings.connections} -d${results.soak ? `${results.soak.minutes ?? '?'}m` : `${results.settings.seconds}s`}</text>`,
    `<text x="10" y="66" fill="#555">${esc(legend)}</text>`,
  ];
  let y = 80;
  for (const section of chartSections(results)) {
    y += 24;
    parts.push(`<text x="10" y="${y}" font-weight="bold">${esc(section.title)}</text>`);
    y += 8;
    const max = Math.max(1, ...section.rows.map((r) => (Number.isFinite(r.value) ? r.value : 0)));
    for (const r of section.rows) {
      const w = Number.isFinite(r.value) ? Math.max(1, (r.value / max) * barW) : 0;
      parts.push(`<text x="${labelW - 8}" y="${y + 19}" text-anchor="end">${esc(r.label)}</text>`);
      parts.push(
        `<rect x="${labelW}" y="${y + 5}" width="${w.toFixed(1)}" height="${rowH - 10}" fill="${r.fill}"/>`,
      );
      const textFill = r.text.startsWith('BROKEN') ? COLOUR.BROKEN : '#222';
      parts.push(`<text x="${labelW + w + 6}" y="${y + 19}" fill="${textFill}">${esc(r.text)}</text>`);
      y += rowH;
    }
  }
  y += 30;
  parts.push(
    `<text x="10" y="${y}" fill="#555">ratios are medians of per-round ratios (alternating rounds, same run): CPU time per request, or req/s for the peer; see bench/README.md</text>`,
  );
  const height = y + 16;
  return `${[
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="13">`,
    '<rect width="100%" height="100%" fill="#ffffff"/>',
    ...parts,
    '</svg>',
  ].join('\n')}\n`;
}

/** Writes `<out>` (JSON) and the SVG next to it (same name, .svg). */
export async function writeResults(outJson, results) {
  await mkdir(dirname(outJson), { recursive: true });
  await writeFile(outJson, `${JSON.stringify(results, null, 2)}\n`);
  const svgPath = `${outJson.replace(/\.json$/, '')}.svg`;
  await writeFile(svgPath, renderSvg(results));
  return svgPath;
}
