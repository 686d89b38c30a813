// tiergate dashboard: polls ./data every 2 s and draws it. Plain browser JavaScript,
// no build step; Chart.js (window.Chart) is served by the gateway at ./assets/.
'use strict';

(() => {
  const POLL_MS = 2000;
  // Okabe–Ito: distinguishable with the common colour-vision deficiencies.
  const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];
  const ERROR_COLOUR = '#9aa0a6';

  const $ = (id) => document.getElementById(id);
  const pct = (x, digits = 1) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(digits)} %`);
  const count = new Intl.NumberFormat('en-US');
  const usd = (x) => {
    if (x === null || x === undefined) return '—';
    const abs = Math.abs(x);
    const text = abs === 0 ? '0' : abs >= 1 ? abs.toFixed(2) : abs >= 0.01 ? abs.toFixed(4) : abs.toPrecision(3);
    return `${x < 0 ? '−' : ''}$${text}`;
  };
  const clock = (iso) => {
    const d = new Date(iso);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
  };
  const orNull = (x) => (x === undefined ? null : x);
  const times100 = (x) => (x === null || x === undefined ? null : x * 100);

  function setText(id, text, value) {
    const el = $(id);
    el.textContent = text;
    if (value !== undefined) el.dataset.value = value === null ? '' : String(value);
  }

  function lineOptions(yTitle, extra = {}) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      spanGaps: true,
      interaction: { mode: 'index', intersect: false },
      // Legend entries drawn as lines (dashed for the second series), like the plot.
      plugins: { legend: { position: 'bottom', labels: { usePointStyle: true, pointStyle: 'line' } } },
      scales: {
        x: { ticks: { maxTicksLimit: 8, maxRotation: 0 } },
        y: { beginAtZero: true, title: { display: true, text: yTitle } },
        ...extra,
      },
    };
  }

  function line(label, colour, yAxisID = 'y', dashed = false) {
    return {
      label,
      data: [],
      borderColor: colour,
      backgroundColor: colour,
      borderWidth: 2,
      pointRadius: 2,
      tension: 0.2,
      yAxisID,
      borderDash: dashed ? [6, 4] : [],
    };
  }

  let charts = null;
  /** Shown while nothing else is wrong, when the page cannot draw charts. */
  let noCharts = null;

  function createCharts() {
    const { Chart } = window;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = '#3c4550';
    return {
      mix: new Chart($('chart-mix'), {
        type: 'bar',
        data: { labels: [], datasets: [] },
        options: {
          ...lineOptions('requests per bucket'),
          plugins: { legend: { position: 'bottom' } },
          scales: {
            x: { stacked: true, ticks: { maxTicksLimit: 8, maxRotation: 0 } },
            y: { stacked: true, beginAtZero: true, title: { display: true, text: 'requests per bucket' }, ticks: { precision: 0 } },
          },
        },
      }),
      cost: new Chart($('chart-cost'), {
        type: 'line',
        data: { labels: [], datasets: [line('cost saved (%)', PALETTE[2]), line('cost saved ($)', PALETTE[0], 'y1', true)] },
        options: lineOptions('% of always-best cost', {
          y: { suggestedMin: 0, suggestedMax: 100, title: { display: true, text: '% of always-best cost' } },
          y1: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: 'USD' } },
        }),
      }),
      escalation: new Chart($('chart-escalation'), {
        type: 'line',
        data: { labels: [], datasets: [line('escalation rate (%)', PALETTE[5]), line('gate passed (%)', PALETTE[0], 'y', true)] },
        options: lineOptions('% of requests', { y: { min: 0, max: 100, title: { display: true, text: '% of requests' } } }),
      }),
      quality: new Chart($('chart-quality'), {
        type: 'line',
        data: { labels: [], datasets: [line('mean quality score', PALETTE[3]), line('quality retention', PALETTE[2], 'y', true)] },
        options: lineOptions('score (0–1)', { y: { suggestedMin: 0, suggestedMax: 1, title: { display: true, text: 'score (0–1) / ratio' } } }),
      }),
      latency: new Chart($('chart-latency'), {
        type: 'line',
        data: { labels: [], datasets: [line('p50', PALETTE[0]), line('p95', PALETTE[1], 'y', true)] },
        options: lineOptions('milliseconds'),
      }),
    };
  }

  function renderHeadlines(data) {
    const t = data.totals;
    setText('headline-requests', count.format(t.requests), t.requests);
    setText('headline-errors', t.errors ? `${count.format(t.errors)} failed` : 'none failed', t.errors);
    setText('headline-cost-saved-pct', pct(t.cost_saved_pct), t.cost_saved_pct);
    setText('headline-cost-saved-usd', usd(t.cost_saved_usd), t.cost_saved_usd);
    setText('headline-best-cost-usd', usd(t.best_cost_usd), t.best_cost_usd);
    setText('headline-escalation-rate', pct(t.escalation_rate), t.escalation_rate);
    setText('headline-escalated', `${count.format(t.escalated)} escalated`, t.escalated);
    setText('headline-quality', t.quality_mean === null ? '—' : t.quality_mean.toFixed(3), t.quality_mean);
    setText(
      'headline-retention',
      t.quality_retention === null
        ? `${count.format(t.quality_count)} scored; retention needs shadow data`
        : `retention ${pct(t.quality_retention)} over ${count.format(t.retention_count)} shadowed`,
      t.quality_retention,
    );
    setText('headline-policy-version', data.policy_version);
    setText('bucket-seconds', String(data.bucket_seconds));
    setText('window-minutes', String(Math.round((data.bucket_seconds * data.buckets.length) / 60)));
    setText('since', new Date(data.since).toLocaleString());
    setText('updated', `updated ${clock(data.generated_at)}`);
  }

  function renderMix(chart, data) {
    const buckets = data.buckets;
    const tiers = [...data.tiers];
    for (const b of buckets) for (const tier of Object.keys(b.by_tier)) if (!tiers.includes(tier)) tiers.push(tier);
    const datasets = tiers.map((tier, i) => ({
      label: tier === '' ? '(no tier)' : tier,
      data: buckets.map((b) => b.by_tier[tier] ?? 0),
      backgroundColor: PALETTE[i % PALETTE.length],
      stack: 'requests',
    }));
    datasets.push({ label: 'failed', data: buckets.map((b) => b.errors), backgroundColor: ERROR_COLOUR, stack: 'requests' });
    chart.data.datasets = datasets;
  }

  function render(data) {
    renderHeadlines(data);
    if (!charts) return;
    const labels = data.buckets.map((b) => clock(b.start));
    const b = data.buckets;
    for (const chart of Object.values(charts)) chart.data.labels = labels;
    renderMix(charts.mix, data);
    charts.cost.data.datasets[0].data = b.map((x) => times100(x.cost_saved_pct));
    charts.cost.data.datasets[1].data = b.map((x) => (x.cost_saved_pct === null ? null : x.cost_saved_usd));
    charts.escalation.data.datasets[0].data = b.map((x) => times100(x.escalation_rate));
    charts.escalation.data.datasets[1].data = b.map((x) => times100(x.gate_passed_share));
    charts.quality.data.datasets[0].data = b.map((x) => orNull(x.quality_mean));
    charts.quality.data.datasets[1].data = b.map((x) => orNull(x.quality_retention));
    charts.latency.data.datasets[0].data = b.map((x) => orNull(x.latency_ms.p50));
    charts.latency.data.datasets[1].data = b.map((x) => orNull(x.latency_ms.p95));
    for (const chart of Object.values(charts)) chart.update('none');
  }

  /** One message at a time, in the alert region; null hides it. */
  function showProblem(text) {
    const el = $('problem');
    if (text === null) {
      el.hidden = true;
      el.textContent = '';
    } else if (el.textContent !== text) {
      el.textContent = text;
      el.hidden = false;
    }
  }

  async function poll() {
    try {
      const res = await fetch('data', { cache: 'no-store', headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      render(await res.json());
      showProblem(noCharts);
    } catch (err) {
      showProblem(`Cannot load dashboard data (${err instanceof Error ? err.message : String(err)}); retrying every ${POLL_MS / 1000} s.`);
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  function start() {
    if (window.Chart) charts = createCharts();
    else noCharts = 'Chart.js did not load (is the chart.js package installed next to the gateway?): numbers only.';
    void poll();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
