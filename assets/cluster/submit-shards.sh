#!/bin/bash
# Submits a sharded build and its merge: submit-shards.sh SHARDS CORPUS OUTDIR TABLE [pelt
# build options]. Prints the two job ids. Extra sbatch options go in $SBATCH_OPTS.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: submit-shards.sh SHARDS CORPUS OUTDIR TABLE [pelt build options]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
shards=$1 corpus=$2 outdir=$3 table=$4
shift 4
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_OPTS:-} --array=0-$((shards - 1)) \
  "$here/pelt-shards.sbatch" "$corpus" "$outdir" "$@")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_OPTS:-} --dependency=afterok:"$array" \
  "$here/pelt-merge.sbatch" "$outdir" "$table")
echo "$array ${merge%%;*}"
