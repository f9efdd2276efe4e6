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
  /** For 'points': the marker's shape, so markers differ by more than colour. Default circle. */
  shape?: Shape;
}

export type Shape = 'circle' | 'up' | 'down' | 'diamond' | 'square' | 'cross';

/** Draws one marker centred on (x, y), in canvas pixels. */
function mark(ctx: CanvasRenderingContext2D, shape: Shape, x: number, y: number, r: number): void {
  ctx.beginPath();
  switch (shape) {
    case 'up':
      ctx.moveTo(x, y - r * 1.2);
      ctx.lineTo(x + r * 1.1, y + r * 0.8);
      ctx.lineTo(x - r * 1.1, y + r * 0.8);
      break;
    case 'down':
      ctx.moveTo(x, y + r * 1.2);
      ctx.lineTo(x + r * 1.1, y - r * 0.8);
      ctx.lineTo(x - r * 1.1, y - r * 0.8);
      break;
    case 'diamond':
      ctx.moveTo(x, y - r * 1.3);
      ctx.lineTo(x + r * 1.1, y);
      ctx.lineTo(x, y + r * 1.3);
      ctx.lineTo(x - r * 1.1, y);
      break;
    case 'square':
      ctx.rect(x - r, y - r, 2 * r, 2 * r);
      break;
    case 'cross':
      ctx.moveTo(x - r, y - r);
      ctx.lineTo(x + r, y + r);
      ctx.moveTo(x + r, y - r);
      ctx.lineTo(x - r, y + r);
      return;
    default:
      ctx.arc(x, y, r, 0, 2 * Math.PI);
  }
  ctx.closePath();
}

/** A uPlot hook that draws the shaped markers of every visible 'points' series with a shape. */
function drawShapes(series: ChartSeries[]) {
  return (u: uPlot): void => {
    const ctx = u.ctx;
    const ratio = devicePixelRatio;
    series.forEach((s, i) => {
      if (s.kind !== 'points' || s.shape === undefined || u.series[i + 1]?.show === false) return;
      const xs = u.data[0];
      const ys = u.data[i + 1] as Array<number | null>;
      const r = ((s.size ?? 9) / 2) * ratio;
      ctx.save();
      ctx.lineWidth = 2 * ratio;
      ctx.strokeStyle = s.color;
      ctx.fillStyle = s.color;
      for (let k = 0; k < xs.length; k++) {
        const v = ys[k];
        if (v === null || v === undefined) continue;
        mark(ctx, s.shape, u.valToPos(xs[k] as number, 'x', true), u.valToPos(v, s.scale ?? 'y', true), r);
        if (s.shape !== 'cross' && s.hollow !== true) ctx.fill();
        ctx.stroke();
      }
      ctx.restore();
    });
  };
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
      hooks: { draw: [drawShapes(props.series)] },
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
          // Shaped markers are drawn by drawShapes; uPlot draws round ones.
          points: s.kind === 'points' ? { show: s.shape === undefined, size: s.size ?? 9, stroke: s.color, fill: s.hollow === true ? 'transparent' : s.color, width: 2 } : { show: s.kind === 'line' && props.data[0].length < 200 },
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
