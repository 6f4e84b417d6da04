// The console's own script: charts (uPlot) from the data the server put in `data-chart`,
// and typed confirmations. Everything works without it except drawing the charts, whose
// figures are also in a table next to each one. Loaded with `defer`; no inline script.
(() => {
  const palette = ['#2f6fdf', '#d9772b', '#2a9d6f', '#b03aa8'];

  function drawChart(el) {
    if (el.dataset.drawn === '1' || typeof uPlot === 'undefined') return;
    const spec = JSON.parse(el.dataset.chart);
    const width = Math.max(280, el.clientWidth || 600);
    const options = {
      width,
      height: 200,
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [
        { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.2)' } },
        { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.2)' } },
      ],
      series: [{}].concat(
        spec.series.map((s, i) => ({
          label: s.label,
          stroke: palette[i % palette.length],
          width: 2,
          fill: i === 0 ? 'rgba(47,111,223,0.12)' : undefined,
          points: { show: spec.x.length < 30 },
        })),
      ),
    };
    el.dataset.drawn = '1';
    const plot = new uPlot(options, [spec.x].concat(spec.series.map((s) => s.values)), el);
    new ResizeObserver(() => plot.setSize({ width: Math.max(280, el.clientWidth), height: 200 })).observe(el);
  }

  function wireConfirm(form) {
    if (form.dataset.wired === '1') return;
    form.dataset.wired = '1';
    const input = form.querySelector('input[name="confirm"]');
    const button = form.querySelector('button[type="submit"]');
    if (!input || !button) return;
    const check = () => {
      button.disabled = input.value !== form.dataset.confirm;
    };
    input.addEventListener('input', check);
    check();
  }

  // The Live page: every tenant's events (or one tenant's) over Server-Sent Events, newest
  // first, as text only. The server sends the recent events first on every (re)connection,
  // so the list starts again from them.
  function follow(list) {
    if (list.dataset.wired === '1') return;
    list.dataset.wired = '1';
    const state = document.getElementById('live-state');
    const source = new EventSource(list.dataset.stream);
    source.onopen = () => {
      list.replaceChildren();
      if (state) state.textContent = 'Following: new events appear at the top.';
    };
    source.onerror = () => {
      if (state) state.textContent = 'Disconnected; reconnecting…';
    };
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      const item = document.createElement('li');
      item.dataset.type = event.type;
      item.dataset.tenant = event.tenant;
      const time = document.createElement('time');
      time.dateTime = event.at;
      time.textContent = `${event.at.slice(11, 19)} UTC`;
      const type = document.createElement('code');
      type.textContent = event.type;
      const tenant = document.createElement('strong');
      tenant.className = 'tenant';
      tenant.textContent = event.tenant;
      item.append(time, ' ', tenant, ' ', type, ` #${event.seq}${event.actor ? ` by ${event.actor}` : ''}`);
      list.prepend(item);
      while (list.children.length > 200) list.lastElementChild.remove();
    };
  }

  function init(root) {
    for (const list of root.querySelectorAll('[data-stream]')) follow(list);
    for (const el of root.querySelectorAll('[data-chart]')) drawChart(el);
    for (const form of root.querySelectorAll('form[data-confirm]')) wireConfirm(form);
  }

  document.addEventListener('DOMContentLoaded', () => init(document));
  document.addEventListener('htmx:afterSettle', (event) => init(event.target));
})();
