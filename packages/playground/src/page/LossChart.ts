/**
 * The live loss chart: train loss (the trainer's report lines) and validation loss against the step,
 * with the chain's knots as dashed lines. uPlot: 45 KB, draws thousands of points per frame, and is
 * the usual choice for live time series; redraws are throttled to animation frames.
 */
import uPlot from "uplot"
import type { ProgressPoint } from "../protocol.js"

export class LossChart {
  private readonly plot: uPlot
  private steps: Array<number> = []
  private train: Array<number | null> = []
  private valid: Array<number | null> = []
  private knots: ReadonlyArray<number> = []
  private pending = false

  constructor(container: HTMLElement) {
    const knotsPlugin: uPlot.Plugin = {
      hooks: {
        draw: (u) => {
          const ctx = u.ctx
          ctx.save()
          ctx.strokeStyle = "#e8590c"
          ctx.setLineDash([6, 4])
          ctx.lineWidth = 1.5 * devicePixelRatio
          ctx.fillStyle = "#e8590c"
          ctx.font = `${11 * devicePixelRatio}px system-ui`
          for (const knot of this.knots) {
            const x = u.valToPos(knot, "x", true)
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue
            ctx.beginPath()
            ctx.moveTo(x, u.bbox.top)
            ctx.lineTo(x, u.bbox.top + u.bbox.height)
            ctx.stroke()
            ctx.fillText("knot", x + 3 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio)
          }
          ctx.restore()
        }
      }
    }
    this.plot = new uPlot(
      {
        width: Math.max(400, container.clientWidth),
        height: 300,
        scales: { x: { time: false } },
        axes: [{ label: "step" }, { label: "loss" }],
        series: [
          { label: "step" },
          { label: "train loss", stroke: "#3b5bdb", width: 2, spanGaps: true },
          { label: "validation loss", stroke: "#2f9e44", width: 2, spanGaps: true, points: { show: true, size: 6 } }
        ],
        plugins: [knotsPlugin]
      },
      [[], [], []],
      container
    )
    new ResizeObserver(() => this.plot.setSize({ width: Math.max(400, container.clientWidth), height: 300 })).observe(container)
  }

  reset(knots: ReadonlyArray<number>, history: ReadonlyArray<ProgressPoint>) {
    this.knots = knots
    this.steps = []
    this.train = []
    this.valid = []
    for (const point of history) this.add(point)
    this.redraw()
  }

  add(point: ProgressPoint) {
    this.steps.push(point.step)
    this.train.push(point.loss ?? null)
    this.valid.push(point.validLoss ?? null)
    if (!this.pending) {
      this.pending = true
      requestAnimationFrame(() => this.redraw())
    }
  }

  private redraw() {
    this.pending = false
    this.plot.setData([this.steps, this.train, this.valid])
  }
}
