#!/bin/bash
# The sharded build on a real single-node Slurm: starts munged, slurmctld and slurmd with a
# configuration in a fresh temporary folder, submits assets/cluster/submit-shards.sh (a job
# array of 3 shards and a merge that waits for it) on the sample corpus, and checks that the
# merged table is byte-identical to a single build. Stops the daemons by their pids.
#
#   tests/slurm/run.sh PELT_BINARY
#
# Needs Debian's slurmctld, slurmd, slurm-client and munge (.ci/run installs them), and root.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pelt=$(realpath "${1:?usage: tests/slurm/run.sh PELT_BINARY}")
work=$(mktemp -d /tmp/pelt-slurm.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for f in "$work"/run/*.pid; do
    [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work"/{run,state,spool,log,munge,out}
chown munge:munge "$work/munge"
chmod 755 "$work/munge"

# munge: a fresh key, the daemon as the munge user.
key="$work/munge/munge.key"
mungekey --create --keyfile="$key" --force >/dev/null 2>&1 || mungekey -c -k "$key" -f
chown munge:munge "$key"
chmod 400 "$key"
sock="$work/munge/munge.socket"
runuser -u munge -- munged --key-file="$key" --socket="$sock" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/seed"
export MUNGE_SOCKET=$sock

host=$(hostname -s)
node=$(slurmd -C | head -1 | sed -e "s/NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/" -e 's/ UpTime=.*//')
conf="$work/slurm.conf"
cat >"$conf" <<CONF
ClusterName=pelt-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$((17000 + RANDOM % 1000))
SlurmdPort=$((18000 + RANDOM % 1000))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_interval=1
MinJobAge=2
ReturnToService=2
MailProg=/bin/true
$node State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$conf
slurmctld -f "$conf"
slurmd -f "$conf"
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then break; fi
  sleep 0.5
done
sinfo -h -o '%P %T %c' >&2

corpus="$root/assets/sample/pubmed-linked.jsonl"
opts=(--k 8 --threads 1 --encoders 1)
# The single build, for reference.
"$pelt" build --corpus "$corpus" --out "$work/single.safetensors" "${opts[@]}" >"$work/log/single.out"
export PELT=$pelt
ids=$(SBATCH_OPTS="--chdir=$work/log" "$root/assets/cluster/submit-shards.sh" 3 "$corpus" "$work/out" \
  "$work/merged.safetensors" "${opts[@]}")
read -r array merge <<<"$ids"
echo "slurm: array job $array, merge job $merge" >&2
for _ in $(seq 600); do
  if ! squeue -h -j "$array,$merge" 2>/dev/null | grep -q .; then break; fi
  sleep 0.5
done
passed=0 failed=0
check() {
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "slurm test failed: $*" >&2; fi
}
check test "$(ls "$work/out"/shard-*.safetensors 2>/dev/null | wc -l)" -eq 3
check cmp "$work/single.safetensors" "$work/merged.safetensors"
# No spill files or checkpoints are left behind.
check test -z "$(find "$work/out" -name '*.ckpt*' -o -name '.pelt-*' | head -1)"
if [ "$failed" -gt 0 ]; then
  tail -n 20 "$work"/log/*.out "$work"/log/slurmctld.log >&2 || true
fi
echo "slurm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
