/** The inverse of a permutation: `inverse[order[i]] = i`. */
export const inverseOrder = (order: ReadonlyArray<number>): Array<number> => {
  const inverse = new Array<number>(order.length)
  order.forEach((row, i) => {
    inverse[row] = i
  })
  return inverse
}
