//! `leaderboard`: the seed's gaming use case. Applies a player's score
//! event to the board and returns the new board and ranking.
//!
//! The board lives in the host's key-value capability (`kv.get` /
//! `kv.put`, key `board`, in this function's own namespace), so each
//! tenant running this plugin has its own board. An event may instead
//! carry the board (`{"board": ..., "event": ...}`): then the function is
//! stateless and needs no capability.

use std::collections::BTreeMap;

use fnhost_guest::Error;
use serde::{Deserialize, Serialize};

/// The board: best score per player.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Board {
    /// Player name → best score.
    pub best: BTreeMap<String, u64>,
    /// Score events applied so far.
    pub events: u64,
}

/// A player scored.
#[derive(Deserialize, Debug)]
pub struct ScoreEvent {
    /// Player name (1-32 characters).
    pub player: String,
    /// Points scored in this game.
    pub score: u64,
}

/// The event: the new score, and the board when it travels with the
/// event.
#[derive(Deserialize, Debug)]
pub struct Input {
    /// The board so far; absent: kept in the host's key-value store.
    #[serde(default)]
    pub board: Option<Board>,
    /// The score to apply.
    pub event: ScoreEvent,
}

/// One row of the ranking.
#[derive(Serialize, Debug, PartialEq)]
pub struct Rank {
    /// 1-based rank; equal scores share a rank.
    pub rank: u32,
    /// Player name.
    pub player: String,
    /// Best score.
    pub score: u64,
}

/// The answer.
#[derive(Serialize, Debug)]
pub struct Output {
    /// The new board.
    pub board: Board,
    /// Top 10, best first (ties by name).
    pub top: Vec<Rank>,
    /// Did this event set the player's personal best?
    pub personal_best: bool,
}

/// Applies one event to `board` (plain Rust: also callable natively).
pub fn apply(mut board: Board, ev: ScoreEvent) -> Result<Output, Error> {
    if ev.player.is_empty() || ev.player.chars().count() > 32 {
        return Err(Error::new(
            "InvalidPlayer",
            "player must be 1-32 characters",
        ));
    }
    let best = board.best.entry(ev.player).or_insert(0);
    let personal_best = ev.score > *best;
    *best = (*best).max(ev.score);
    board.events += 1;
    let mut rows: Vec<(&String, &u64)> = board.best.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut top = Vec::new();
    let mut rank = 0;
    let mut last = None;
    for (i, (player, &score)) in rows.into_iter().take(10).enumerate() {
        if last != Some(score) {
            rank = i as u32 + 1;
            last = Some(score);
        }
        top.push(Rank {
            rank,
            player: player.clone(),
            score,
        });
    }
    Ok(Output {
        board,
        top,
        personal_best,
    })
}

/// Typed JSON handler.
#[fnhost_guest::handler]
pub fn leaderboard(input: Input) -> Result<Output, Error> {
    match input.board {
        Some(board) => apply(board, input.event),
        None => {
            let board = load()?;
            let out = apply(board, input.event)?;
            save(&out.board)?;
            Ok(out)
        }
    }
}

fn storage(e: fnhost_guest::host::HostCallError) -> Error {
    Error::new("Storage", e.to_string())
}

/// The board from the key-value store (empty at first).
fn load() -> Result<Board, Error> {
    let r: serde_json::Value =
        fnhost_guest::host::call("kv.get", &serde_json::json!({"key": "board"}))
            .map_err(storage)?;
    Ok(serde_json::from_value(r["value"].clone()).unwrap_or_default())
}

fn save(board: &Board) -> Result<(), Error> {
    let _: serde_json::Value = fnhost_guest::host::call(
        "kv.put",
        &serde_json::json!({"key": "board", "value": board}),
    )
    .map_err(storage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_share_a_rank() {
        let mut board = Board::default();
        for (p, s) in [("ann", 50), ("bob", 70), ("cat", 50)] {
            board = apply(
                board,
                ScoreEvent {
                    player: p.into(),
                    score: s,
                },
            )
            .unwrap()
            .board;
        }
        let out = apply(
            board,
            ScoreEvent {
                player: "ann".into(),
                score: 10,
            },
        )
        .unwrap();
        assert!(!out.personal_best);
        let ranks: Vec<_> = out
            .top
            .iter()
            .map(|r| (r.rank, r.player.as_str(), r.score))
            .collect();
        assert_eq!(ranks, vec![(1, "bob", 70), (2, "ann", 50), (2, "cat", 50)]);
        assert_eq!(out.board.events, 4);
    }
}
