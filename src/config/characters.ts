// Naming a character in a message: a control character or a space cannot be shown, so it is named instead.

export interface Found {
  /** Index of the character in the text (UTF-16 units). */
  index: number;
  /** The character, named for a message: "a line feed (LF)", "the control character U+0007", "\"€\" (U+20AC)". */
  what: string;
  codePoint: number;
}

/** The first character of `text` for which `isBad` holds, or null. */
export function findCharacter(text: string, isBad: (codePoint: number) => boolean): Found | null {
  let index = 0;
  for (const char of text) {
    const codePoint = char.codePointAt(0) as number;
    if (isBad(codePoint)) return { index, what: describeCharacter(char), codePoint };
    index += char.length;
  }
  return null;
}

function describeCharacter(char: string): string {
  const codePoint = char.codePointAt(0) as number;
  const code = `U+${codePoint.toString(16).toUpperCase().padStart(4, "0")}`;
  switch (codePoint) {
    case 0x0d:
      return "a carriage return (CR)";
    case 0x0a:
      return "a line feed (LF)";
    case 0x00:
      return `a NUL character (${code})`;
    case 0x20:
      return "a space";
    case 0x09:
      return "a tab";
  }
  if (codePoint < 0x20 || (codePoint >= 0x7f && codePoint <= 0x9f)) return `the control character ${code}`;
  if (/\s/u.test(char)) return `the space character ${code}`;
  return `"${char}" (${code})`;
}

/** RFC 9110 control characters other than HTAB, which a field value cannot hold. */
export function isControl(codePoint: number): boolean {
  return (codePoint < 0x20 && codePoint !== 0x09) || codePoint === 0x7f;
}
