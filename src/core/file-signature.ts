import { statSync } from 'node:fs';
import { stat } from 'node:fs/promises';

/**
 * A cheap "did these files change" value for certificate polling: modification and change times, size and inode
 * of each file ('missing' for one that cannot be read), so a rename over the file (a new inode) counts as well.
 */
function fileSignature(st: { mtimeMs: number; ctimeMs: number; size: number; ino: number }): string {
  return `${st.mtimeMs}:${st.ctimeMs}:${st.size}:${st.ino}`;
}

export function signatureSync(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        return fileSignature(statSync(f));
      } catch {
        return 'missing';
      }
    })
    .join('|');
}

export async function signature(files: readonly string[]): Promise<string> {
  const parts = await Promise.all(
    files.map((f) =>
      stat(f).then(
        (st) => fileSignature(st),
        () => 'missing',
      ),
    ),
  );
  return parts.join('|');
}
