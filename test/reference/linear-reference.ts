/**
 * Float64 reference of the linear layer (lib/linear.ts), written from the definitions and sharing no code with
 * the kernels: y[n, m] = Σ_k x[n, k] W[m, k] + b[m]; dx = dy·W; dW = dyᵀ·x; db = Σ_n dy[n, :].
 * Inputs are the values the tensors hold (already rounded to their dtype), so the reference is exact up to
 * float64 rounding, and `mass` (Σ_k |x W|) bounds what a float32 accumulation may legitimately differ by.
 */
export interface Product {
  value: Float64Array
  mass: Float64Array
}

/** C[i, j] = Σ_k A(i, k) B(k, j) with A(i, k) = a[i * aRow + k * aCol], B(k, j) = b[k * bRow + j * bCol]. */
export function matmul(
  a: ArrayLike<number>, aRow: number, aCol: number,
  b: ArrayLike<number>, bRow: number, bCol: number,
  rows: number, cols: number, depth: number,
): Product {
  const value = new Float64Array(rows * cols)
  const mass = new Float64Array(rows * cols)
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let s = 0
      let m = 0
      for (let k = 0; k < depth; k++) {
        const p = a[i * aRow + k * aCol]! * b[k * bRow + j * bCol]!
        s += p
        m += Math.abs(p)
      }
      value[i * cols + j] = s
      mass[i * cols + j] = m
    }
  }
  return { value, mass }
}

/** y [N, M] = x [N, K] · W [M, K]ᵀ + bias [M]. */
export function linearForward(x: ArrayLike<number>, w: ArrayLike<number>, bias: ArrayLike<number> | undefined, N: number, K: number, M: number): Product {
  const p = matmul(x, K, 1, w, 1, K, N, M, K)
  if (bias) {
    for (let n = 0; n < N; n++) {
      for (let m = 0; m < M; m++) {
        p.value[n * M + m] += bias[m]!
        p.mass[n * M + m] += Math.abs(bias[m]!)
      }
    }
  }
  return p
}

/** dx [N, K] = dy [N, M] · W [M, K]. */
export function linearGradInput(dy: ArrayLike<number>, w: ArrayLike<number>, N: number, K: number, M: number): Product {
  return matmul(dy, M, 1, w, K, 1, N, K, M)
}

/** dW [M, K] = dyᵀ · x. */
export function linearGradWeight(dy: ArrayLike<number>, x: ArrayLike<number>, N: number, K: number, M: number): Product {
  return matmul(dy, 1, M, x, K, 1, M, K, N)
}

/** db [M] = Σ_n dy[n, :]. */
export function linearGradBias(dy: ArrayLike<number>, N: number, M: number): Product {
  const value = new Float64Array(M)
  const mass = new Float64Array(M)
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      value[m] += dy[n * M + m]!
      mass[m] += Math.abs(dy[n * M + m]!)
    }
  }
  return { value, mass }
}
