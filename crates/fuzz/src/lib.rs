//! Fuzz targets live in `tests/`: proptest on stable Rust, seeded from the recorded
//! flytekit requests. `CONTRAIL_FUZZ_CASES` sets the iterations per target (default 256;
//! `scripts/fuzz.sh` runs more and prints the totals recorded in `docs/reliability.md`).
