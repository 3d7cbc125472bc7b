import type { ConfigProblem } from "./types.ts";

// supaqueue.yml is read as bytes and must be UTF-8. A decoder that replaces bad bytes with U+FFFD would install a
// header or URL that is not what the file says, so the first bad byte is reported at its line and column instead.

/** The file's text (a byte order mark dropped), or the problem with its first byte that is not UTF-8. */
export function decodeUtf8(bytes: Uint8Array, file: string): { text: string } | { problem: ConfigProblem } {
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    // Not UTF-8: find where, below.
  }
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    return {
      problem: {
        position: { file, line: 1, column: 1 },
        field: "(file)",
        message: "the file is UTF-16; save it as UTF-8",
      },
    };
  }
  const offset = firstInvalidByte(bytes);
  const lineStart = offset === 0 ? 0 : bytes.lastIndexOf(0x0a, offset - 1) + 1;
  let line = 1;
  for (let i = 0; i < lineStart; i++) if (bytes[i] === 0x0a) line++;
  // Columns count characters (UTF-16 units, as the YAML positions do) of the valid text before the byte.
  const before = new TextDecoder("utf-8").decode(bytes.subarray(lineStart, offset));
  const byte = bytes[offset] as number;
  const next = bytes[offset + 1];
  // A lone byte above 0x7F among ASCII is how a single-byte encoding writes a letter such as é.
  const letter = next === undefined || next < 0x80 ? windows1252(byte) : null;
  const hint = letter
    ? ` (in Windows-1252 this byte is "${letter}": the file was probably saved in that encoding, or in Latin-1)`
    : "";
  return {
    problem: {
      position: { file, line, column: before.length + 1 },
      field: "(file)",
      message: `byte 0x${byte.toString(16).toUpperCase().padStart(2, "0")} is not valid UTF-8; save the file as UTF-8${hint}`,
    },
  };
}

/** The printable character a byte is in Windows-1252, or null (a control, or a Node without that encoding). */
function windows1252(byte: number): string | null {
  try {
    const char = new TextDecoder("windows-1252").decode(Uint8Array.of(byte));
    return /^[\u0080-\u009f]$/.test(char) ? null : char;
  } catch {
    return null;
  }
}

/** Where the first byte sequence that is not UTF-8 starts (the rules of the WHATWG decoder, RFC 3629). */
function firstInvalidByte(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const lead = bytes[i] as number;
    if (lead < 0x80) {
      i++;
      continue;
    }
    let length: number;
    // The second byte's range excludes overlong forms, surrogates (ED A0..BF) and code points above U+10FFFF.
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
      length = 3;
      if (lead === 0xe0) low = 0xa0;
      if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      length = 4;
      if (lead === 0xf0) low = 0x90;
      if (lead === 0xf4) high = 0x8f;
    } else return i;
    for (let k = 1; k < length; k++) {
      const byte = bytes[i + k];
      const [min, max] = k === 1 ? [low, high] : [0x80, 0xbf];
      if (byte === undefined || byte < min || byte > max) return i;
    }
    i += length;
  }
  // The decoder refused the bytes, so some sequence above failed; this is not reached.
  return 0;
}
