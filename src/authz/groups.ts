// The `--allowed-group` check applied at the callback and on every request (COMPAT §5.2.1).

/**
 * Compiles `--allowed-group` (COMPAT §5.2.1): empty strings are ignored; with no groups left every session
 * passes; otherwise a session passes when at least one of its groups is in the set (exact, case-sensitive).
 */
export function createGroupCheck(allowedGroups: readonly string[]): (groups: readonly string[]) => boolean {
  const allowed = new Set(allowedGroups.filter((g) => g !== ''));
  if (allowed.size === 0) return () => true;
  return (groups: readonly string[]): boolean => {
    if (!Array.isArray(groups)) return false;
    for (const g of groups) if (allowed.has(g)) return true;
    return false;
  };
}
