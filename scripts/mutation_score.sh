#!/usr/bin/env bash
# Mutation score of the modules behind hpsearch's promises (resume from a checkpoint, pruning, the trial
# records, diagnosis, "a refused input leaves the storage unchanged"): mutmut changes one thing at a time
# in them ([tool.mutmut] in pyproject.toml names the modules and their fast tests) and counts the changes
# the tests catch. Prints a table per module, the survivors, and the score; exits 1 below the goal.
# Not in CI: it runs the tests hundreds of times (an hour or more on two cores).
#   scripts/mutation_score.sh            # the whole run (mutmut resumes an interrupted one)
#   MUTMUT_ARGS="--max-children 4" scripts/mutation_score.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GOAL=${GOAL:-80}

command -v mutmut >/dev/null || pip install -q -e '.[mutation]'
# mutmut copies the package into mutants/ and reuses results for unchanged code; stale copies go first.
[ "${FRESH:-0}" = 1 ] && rm -rf mutants
# shellcheck disable=SC2086  # MUTMUT_ARGS is a list of words on purpose
mutmut run ${MUTMUT_ARGS:-} >/dev/null || true
mutmut results --all true | python3 scripts/mutation_table.py --goal "$GOAL"
