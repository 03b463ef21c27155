/**
 * The few Python string semantics MeZO's templates and prompt encoding rely on, so rendered prompts
 * match theirs character for character (`str.strip(' ')`, `str.lstrip()`, `str.split()`,
 * `str.islower()` on one character).
 */

/** Python's `str.isspace()` for one character (Unicode White_Space as CPython defines it). */
const PY_SPACE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/

export const isPySpace = (ch: string): boolean => PY_SPACE.test(ch)

/** `s.strip(' ')`: removes leading and trailing U+0020 only (tabs and newlines stay). */
export const stripSpaces = (s: string): string => {
  let start = 0
  let end = s.length
  while (start < end && s[start] === " ") start++
  while (end > start && s[end - 1] === " ") end--
  return s.slice(start, end)
}

/** `s.lstrip()`: removes leading whitespace as Python defines it. */
export const lstripWhitespace = (s: string): string => {
  let start = 0
  while (start < s.length && isPySpace(s[start]!)) start++
  return s.slice(start)
}

/** `s.split()`: splits on runs of whitespace, dropping empty pieces. */
export const splitWhitespace = (s: string): Array<string> => {
  const out: Array<string> = []
  let current = ""
  for (const ch of s) {
    if (isPySpace(ch)) {
      if (current !== "") out.push(current)
      current = ""
    } else current += ch
  }
  if (current !== "") out.push(current)
  return out
}

/** `c.islower()` for a single character: cased and lower case. */
export const isLowerChar = (ch: string): boolean => ch !== ch.toUpperCase() && ch === ch.toLowerCase()

/** `s[0].upper() + s[1:]` on code points (Python indexes code points, JS strings are UTF-16). */
export const upperFirst = (s: string): string => {
  const first = s.codePointAt(0)
  if (first === undefined) return s
  const head = String.fromCodePoint(first)
  return head.toUpperCase() + s.slice(head.length)
}

/** `s[0].lower() + s[1:]` on code points. */
export const lowerFirst = (s: string): string => {
  const first = s.codePointAt(0)
  if (first === undefined) return s
  const head = String.fromCodePoint(first)
  return head.toLowerCase() + s.slice(head.length)
}

/** `s.rstrip(chars)` for a single character. */
export const rstripChar = (s: string, ch: string): string => {
  let end = s.length
  while (end > 0 && s[end - 1] === ch) end--
  return s.slice(0, end)
}

/** `s.strip()`: removes leading and trailing whitespace as Python defines it. */
export const stripWhitespace = (s: string): string => {
  let end = s.length
  while (end > 0 && isPySpace(s[end - 1]!)) end--
  return lstripWhitespace(s.slice(0, end))
}
