/** Bytes of a base64 string (the kernels ship as base64 inside the modules); atob is in Node and browsers. */
export const decodeBase64 = (text: string): Uint8Array => {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
