# The test wrapper itself (R-ENG-S11): run before the build, it fails at once and names the
# binary it expected.

load helpers/rdd

@test "R-ENG-S11: scripts/bats fails fast naming the missing rdd binary" {
  empty="$(mktemp -d)"
  run env RDD_BIN_DIR="$empty" "$RDD_REPO/scripts/bats"
  rm -rf "$empty"
  assert_failure
  assert_output --partial "binary not found"
  assert_output --partial "$empty/rdd"
}

@test "R-ENG-S11: the helper refuses to set up a file without the binaries" {
  empty="$(mktemp -d)"
  RDD_BIN_DIR="$empty" run rdd_setup_file
  rm -rf "$empty"
  assert_failure
  assert_output --partial "$empty/rdd"
  assert_output --partial "cargo build --workspace --bins"
}
