# `rdd svc start`: rotation of the service logs and RDD_LOG_TITLE (cli.md §2.2), and the server
# version check of readiness (cli.md §3.3), a serve that dies at start-up. Control plane `app` only.

load helpers/rdd

setup_file() {
  rdd_setup_file
  setup_rdd_control_plane app
}

teardown_file() { rdd_teardown_file; }

restart() {
  rdd svc stop
  rdd svc start
}

@test "every start moves the service logs to the next backup number" {
  local dir
  dir="$(rdd svc paths log_dir)"
  # Backups a user left with a gap: numbering continues after the highest.
  echo old >"$dir/rdd.stderr.7.log"
  echo "marker from before the restart" >>"$dir/rdd.stderr.log"
  restart
  assert_file_exist "$dir/rdd.stderr.8.log"
  run grep -c "marker from before the restart" "$dir/rdd.stderr.8.log"
  assert_output 1
  run grep -c "marker from before the restart" "$dir/rdd.stderr.log"
  assert_output 0
  assert_file_exist "$dir/rdd.stdout.log"
}

@test "RDD_LOG_TITLE is the first line of the new service logs" {
  local dir
  dir="$(rdd svc paths log_dir)"
  RDD_LOG_TITLE="svc.bats title" restart
  run head -n 1 "$dir/rdd.stderr.log"
  assert_output "=== svc.bats title ==="
  run head -n 1 "$dir/rdd.stdout.log"
  assert_output "=== svc.bats title ==="
}

@test "without RDD_KEEP_LOGS only the newest 5 backups stay" {
  local dir n
  dir="$(rdd svc paths log_dir)"
  for n in 20 21 22 23 24 25; do echo "backup $n" >"$dir/rdd.stderr.$n.log"; done
  rdd svc stop
  # The helper sets RDD_KEEP_LOGS for every file; this start runs without it.
  (unset RDD_KEEP_LOGS && rdd svc start)
  run bash -c "ls '$dir' | grep -E '^rdd\.stderr\.[0-9]+\.log$' | sort -t. -k3 -n | tr '\n' ' '"
  assert_output "rdd.stderr.22.log rdd.stderr.23.log rdd.stderr.24.log rdd.stderr.25.log rdd.stderr.26.log "
}

@test "outside developer mode start checks that the server is this rdd" {
  # The running server was built with this client: readiness passes the version check.
  RDD_DEVELOPER_MODE=false run rdd svc start --log-level=info
  assert_success
  assert_output --partial "is ready"
  refute_output --partial "Unsupported server version"
  run rdd ctl version -o json
  assert_success
  assert_output --partial "-rdd."
}

@test "a control plane that dies at start-up is reported at once with its exit status and last log line" {
  local lock holder
  rdd svc stop
  # Another process holds the instance lock: the new serve exits at once.
  lock="$(rdd svc paths dir)/rdd.lock"
  python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
time.sleep(600)' "$lock" &
  holder=$!
  while flock -n "$lock" true; do sleep 0.1; done
  run rdd svc start --log-level=info
  kill "$holder"
  assert_failure
  assert_output --partial "control plane is not running (exit status: 1)"
  assert_output --partial "is already running"
  refute_output --partial "client error (Connect)"
  rdd svc start
}
