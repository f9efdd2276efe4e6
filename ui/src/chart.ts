import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { html } from './html.js';
import { localTime, utcTime } from './format.js';

export interface ChartSeries {
  label: string;
  color: string;
  /** 'step' for replicas, 'line' for metric values, 'points' for markers only. */
  kind: 'step' | 'line' | 'points' | 'dashed';
  /** Marker size for points; filled unless hollow. */
  size?: number;
  hollow?: boolean;
  /** Right-hand axis (replicas beside a metric). */
  scale?: string;
}

export interface ChartProps {
  /** What the chart shows, for screen readers (the tables beside it hold the same data as text). */
  label: string;
  /** Times in seconds, then one array per series (null: no point). */
  data: [number[], ...Array<Array<number | null>>];
  series: ChartSeries[];
  height?: number;
  yLabel?: string;
  testId?: string;
}

/** A uPlot chart that follows its container's width; times on the axis in the browser's zone. */
export function Chart(props: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const width = Math.max(320, el.clientWidth);
    const opts: uPlot.Options = {
      width,
      height: props.height ?? 260,
      tzDate: (ts) => new Date(ts * 1000),
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: true }, y: { auto: true }, r: { auto: true } },
      axes: [
        { stroke: 'currentColor', grid: { stroke: 'rgba(128,128,128,0.2)' } },
        { stroke: 'currentColor', label: props.yLabel, grid: { stroke: 'rgba(128,128,128,0.2)' } },
        ...(props.series.some((s) => s.scale === 'r') ? [{ scale: 'r', side: 1 as const, stroke: 'currentColor', grid: { show: false } }] : []),
      ],
      series: [
        { label: 'Time', value: (_u: uPlot, v: number | null) => (v === null ? '—' : `${localTime(new Date(v * 1000).toISOString())}`) },
        ...props.series.map((s): uPlot.Series => ({
          label: s.label,
          stroke: s.color,
          scale: s.scale ?? 'y',
          width: s.kind === 'points' ? 0 : 2,
          dash: s.kind === 'dashed' ? [6, 4] : undefined,
          paths: s.kind === 'step' ? uPlot.paths.stepped!({ align: 1 }) : s.kind === 'points' ? () => null : undefined,
          points: s.kind === 'points' ? { show: true, size: s.size ?? 9, stroke: s.color, fill: s.hollow === true ? 'transparent' : s.color, width: 2 } : { show: s.kind === 'line' && props.data[0].length < 200 },
          spanGaps: s.kind === 'step' || s.kind === 'dashed',
        })),
      ],
    };
    const plot = new uPlot(opts, props.data as uPlot.AlignedData, el);
    const observer = new ResizeObserver(() => plot.setSize({ width: Math.max(320, el.clientWidth), height: props.height ?? 260 }));
    observer.observe(el);
    return () => {
      observer.disconnect();
      plot.destroy();
    };
  }, [props.data, props.series]);
  const first = props.data[0][0];
  const last = props.data[0].at(-1);
  const span = first === undefined || last === undefined ? 'no data' : `from ${utcTime(new Date(first * 1000).toISOString())} to ${utcTime(new Date(last * 1000).toISOString())}`;
  return html`<figure class="chart" data-testid=${props.testId}>
    <div ref=${box} role="img" aria-label=${`${props.label}, ${span}`}></div>
    <figcaption>${props.label}</figcaption>
  </figure>`;
}
