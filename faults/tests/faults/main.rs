//! The fault suite (issue 12; docs/reliability.md lists each fault, its promise and its test).
//! Every process is the real binary built next to this test (`cargo build --workspace --bins`);
//! Docker is the real daemon, cut through a killable proxy, never stopped. Tests run one at a
//! time (`support::SERIAL`): each starts an API server, a gateway and controllers.

mod support;

mod bad_input;
mod concurrent;
mod disk;
mod docker_cut;
mod kill;
mod readonly;
mod slow_subscriber;
