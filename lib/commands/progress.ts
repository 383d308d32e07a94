/** A one-line progress bar: redrawn in place on a terminal, printed every 10% otherwise. */
export class ProgressBar {
  #total: number
  #tty: boolean
  #quiet: boolean
  #write: (text: string) => void
  #lastDecile = -1
  #start = performance.now()

  constructor(total: number, options: { quiet?: boolean; tty?: boolean; write?: (text: string) => void } = {}) {
    this.#total = total
    this.#quiet = options.quiet ?? false
    this.#tty = options.tty ?? process.stdout.isTTY === true
    this.#write = options.write ?? ((text) => process.stdout.write(text))
  }

  update(done: number, text = ''): void {
    if (this.#quiet || this.#total === 0) return
    const width = 24
    const filled = Math.round((done / this.#total) * width)
    const seconds = ((performance.now() - this.#start) / 1000).toFixed(0)
    const line = `  [${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${String(done).padStart(String(this.#total).length)}/${this.#total} ${text} ${seconds}s`
    if (this.#tty) {
      this.#write(`\r${line}\x1b[K`)
      return
    }
    const decile = Math.floor((done / this.#total) * 10)
    if (decile !== this.#lastDecile || done === this.#total) {
      this.#lastDecile = decile
      this.#write(line + '\n')
    }
  }

  end(): void {
    if (this.#tty && !this.#quiet && this.#total > 0) this.#write('\n')
  }
}
