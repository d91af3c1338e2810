//! A small bounded-time mutation fuzzer for the parsers' tests: a seeded
//! pseudo-random generator mutates the inputs of a corpus directory
//! (`tests/fixtures/fuzz/<target>/`) and hands each mutant to a check that must
//! not panic. A panic reports the seed, iteration and input that caused it.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long each target runs inside `cargo test`.
pub const BUDGET: Duration = Duration::from_secs(2);

/// Fragments that tend to reach unusual parser paths.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\n",
    "\n  - ",
    "- ",
    "\"",
    "'",
    "\\",
    "\t",
    " ",
    "#",
    "null",
    "true",
    "false",
    "~",
    "-1",
    "0",
    "-0.5",
    "1e999",
    "18446744073709551616",
    "99999999999999999999999999",
    "NaN",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "<<: ",
    "---\n",
    "...\n",
    "(a+)+$",
    "[",
    "\\u0000",
    "\u{feff}",
    "\u{0}",
    "é",
    "name",
    "priority",
    "pid",
    "command_regex",
    "execution_time",
    "strategies",
    "scheduling",
    "token",
    "{\"a\":",
];

/// xorshift64*: deterministic, seeded, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The files of `tests/fixtures/fuzz/<target>/`, sorted by name.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    let inputs: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
    inputs
}

/// One to four random edits of a corpus input (sometimes spliced with another).
fn mutate(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 => data.insert(at, rng.next() as u8),
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + rng.below(32)).min(data.len());
                let piece = data[at.min(end)..end].to_vec();
                data.splice(at..at, piece);
            }
            5 => data.truncate(at),
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    data
}

/// Runs `check` on the corpus, then on mutants until `BUDGET` has passed;
/// returns how many inputs were checked.
pub fn run(target: &str, seed: u64, mut check: impl FnMut(&[u8])) -> usize {
    let corpus = corpus(target);
    let mut rng = Rng::new(seed);
    let deadline = Instant::now() + BUDGET;
    let mut runs = 0;
    while runs < corpus.len() || Instant::now() < deadline {
        let input = match corpus.get(runs) {
            Some(input) => input.clone(),
            None => mutate(&mut rng, &corpus),
        };
        if let Err(cause) = panic::catch_unwind(AssertUnwindSafe(|| check(&input))) {
            eprintln!(
                "fuzz {target}: seed {seed}, run {runs} panicked on {:?}",
                String::from_utf8_lossy(&input)
            );
            panic::resume_unwind(cause);
        }
        runs += 1;
    }
    runs
}

/// Panics unless `message` is one non-empty line.
pub fn assert_one_line(input: &[u8], message: &str) {
    assert!(
        !message.is_empty() && !message.contains(['\n', '\r']),
        "not one line: {message:?} for {:?}",
        String::from_utf8_lossy(input)
    );
}
