// gpt2 explore: the `gpt2 generate` command line that gives the page's tokens, quoted for bash
// so that a paste gives the prompt back byte for byte (newlines, quotes, backslashes, any Unicode).

// Characters that a plain '...' would carry literally but that do not survive being shown on a
// page and copied: line breaks and other controls, and invisible or look-alike spaces and marks.
const NEEDS_ESCAPE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}]|[^\S ]/u;

/**
 * `text` as one bash word that expands to exactly `text`, on one line.
 *
 * Plain single quotes when every character shows as itself ('it'\''s' for a quote); otherwise
 * ANSI-C quoting, $'...': \n, \t, \r and \\ by name, and every other control or invisible
 * character as its UTF-8 bytes (\xHH, always two digits, which does not depend on the shell's
 * locale as \u does). Inside $'...' the quote and `!` are written \x27 and \x21, so neither can
 * end the quoting or start a history expansion in an interactive shell.
 */
export function bashQuote(text) {
  if (!NEEDS_ESCAPE.test(text)) return `'${text.replace(/'/g, "'\\''")}'`;
  const encoder = new TextEncoder();
  let out = "";
  for (const ch of text) {
    if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\\") out += "\\\\";
    else if (ch === "'") out += "\\x27";
    else if (ch === "!") out += "\\x21";
    else if (NEEDS_ESCAPE.test(ch)) {
      for (const byte of encoder.encode(ch)) out += `\\x${byte.toString(16).padStart(2, "0")}`;
    } else out += ch;
  }
  return `$'${out}'`;
}

/**
 * The `gpt2 generate` command that samples `n` tokens after `text` as the page did: the same
 * model, engine, seed and settings, and --ignore-eot, as the page never stops at <|endoftext|>.
 * The prompt comes last, after `--`, so a prompt that starts with "-" is not read as an option.
 */
export function generateCommand({ text, model, engine, seed, n, temperature, top_k, top_p }) {
  return (
    `gpt2 generate --model ${bashQuote(model)} --engine ${engine} --seed ${seed} -n ${n} ` +
    `--temperature ${temperature} --top-k ${top_k} --top-p ${top_p} --ignore-eot -- ${bashQuote(text)}`
  );
}

/** The text of token byte strings, or null where it is not whole UTF-8 (no command line can type it). */
export function textOfBytes(pieces) {
  const bytes = Uint8Array.from(pieces.flat());
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}
