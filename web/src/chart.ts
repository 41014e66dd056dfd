// uPlot wrapper: a time-series chart sized to its container, in the page's colour scheme.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface SeriesSpec {
  label: string;
  color: string;
  bars?: boolean;
}

export function timeChart(container: HTMLElement, series: SeriesSpec[], data: uPlot.AlignedData, height = 220, time = true): uPlot {
  const dark = matchMedia('(prefers-color-scheme: dark)').matches;
  const axis = { stroke: dark ? '#c9d1d9' : '#333', grid: { stroke: dark ? '#30363d' : '#e5e5e5' }, ticks: { stroke: dark ? '#30363d' : '#ccc' } };
  const width = Math.max(280, container.clientWidth || 600);
  const options: uPlot.Options = {
    width,
    height,
    axes: [time ? axis : { ...axis, label: 'second of the replay' }, axis],
    scales: { x: { time } },
    series: [
      {},
      ...series.map((spec) => ({
        label: spec.label,
        stroke: spec.color,
        fill: spec.bars ? spec.color + '55' : undefined,
        width: 2,
        paths: spec.bars ? uPlot.paths.bars!({ size: [0.8, 40] }) : undefined,
        points: { show: false },
      })),
    ],
    legend: { show: true },
    cursor: { drag: { x: false, y: false } },
  };
  container.replaceChildren();
  return new uPlot(options, data, container);
}
