//! Arguments, environment, clocks, random, polling, process calls, and
//! the socket calls (none: every one is `ENOTSUP`).

use super::*;

// ---- args, environment, clocks, random ----------------------------------

pub(super) fn args_sizes_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    argc: i32,
    size: i32,
) -> Result<(), Errno> {
    gm::write_u32(mem, argc as u32, 1)?;
    gm::write_u32(mem, size as u32, st.program.len() as u32 + 1)?;
    Ok(())
}

pub(super) fn args_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    argv: i32,
    buf: i32,
) -> Result<(), Errno> {
    write_strings(mem, std::iter::once(st.program.as_bytes()), argv, buf)
}

pub(super) fn environ_sizes_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    count: i32,
    size: i32,
) -> Result<(), Errno> {
    let env = st.env;
    gm::write_u32(mem, count as u32, env.len() as u32)?;
    let total: usize = env.iter().map(|e| e.len() + 1).sum();
    gm::write_u32(mem, size as u32, total as u32)?;
    Ok(())
}

pub(super) fn environ_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    environ: i32,
    buf: i32,
) -> Result<(), Errno> {
    write_strings(mem, st.env.iter().map(|e| e.as_bytes()), environ, buf)
}

pub(super) fn clock_res_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    id: i32,
    out: i32,
) -> Result<(), Errno> {
    now_ns(st, id)?;
    gm::write_u64(mem, out as u32, 1)?;
    Ok(())
}

pub(super) fn clock_time_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    id: i32,
    _precision: i64,
    out: i32,
) -> Result<(), Errno> {
    let t = now_ns(st, id)?;
    gm::write_u64(mem, out as u32, t)?;
    Ok(())
}

pub(super) fn random_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    buf: i32,
    len: i32,
) -> Result<(), Errno> {
    let dst = gm::slice_mut(mem, buf as u32, len as u32 as u64)?;
    let seed = *blake3::keyed_hash(st.secret, &st.nonce.to_le_bytes()).as_bytes();
    let rng = st
        .wasi
        .rng
        .get_or_insert_with(|| Box::new(blake3::Hasher::new_keyed(&seed).finalize_xof()));
    // Up to 4 GiB in one call: filled a chunk at a time, under the deadline.
    for chunk in dst.chunks_mut(CHUNK) {
        check_deadline(st.deadline)?;
        rng.fill(chunk);
    }
    Ok(())
}

pub(super) fn sched_yield(_: &mut [u8], _: &mut View<'_>) -> Result<(), Errno> {
    std::thread::yield_now();
    Ok(())
}

pub(super) fn proc_raise(_: &mut [u8], _: &mut View<'_>, _sig: i32) -> Result<(), Errno> {
    Err(errno::NOSYS)
}

/// Clock subscriptions sleep, but never past the invocation's deadline;
/// fd subscriptions are always ready (stdio and memory files never block).
pub(super) fn poll_oneoff(
    mem: &mut [u8],
    st: &mut View<'_>,
    input: i32,
    out: i32,
    n: i32,
    nevents: i32,
) -> Result<(), Errno> {
    let run = |mem: &mut [u8], st: &mut View<'_>| -> Result<Option<Duration>, Errno> {
        let n = n as u32;
        if n == 0 || n > MAX_IOVS {
            return Err(errno::INVAL);
        }
        let subs = gm::slice(mem, input as u32, n as u64 * 48)?.to_vec();
        let mut events = Vec::new();
        let mut sleep: Option<(Duration, u64)> = None;
        for s in subs.chunks_exact(48) {
            let userdata = u64::from_le_bytes(s[0..8].try_into().unwrap_or_default());
            match s[8] {
                0 => {
                    let clock = i32::from_le_bytes(s[16..20].try_into().unwrap_or_default());
                    let timeout = u64::from_le_bytes(s[24..32].try_into().unwrap_or_default());
                    let abs = u16::from_le_bytes([s[40], s[41]]) & 1 == 1;
                    let now = now_ns(st, clock)?;
                    let wait = Duration::from_nanos(if abs {
                        timeout.saturating_sub(now)
                    } else {
                        timeout
                    });
                    if sleep.is_none_or(|(d, _)| wait < d) {
                        sleep = Some((wait, userdata));
                    }
                }
                ty @ (1 | 2) => events.push((userdata, ty, 0u16)),
                _ => return Err(errno::INVAL),
            }
        }
        let mut slept = None;
        if events.is_empty()
            && let Some((wait, userdata)) = sleep
        {
            slept = Some(wait);
            events.push((userdata, 0, 0));
        }
        for (i, (userdata, ty, err)) in events.iter().enumerate() {
            let mut e = [0u8; 32];
            e[0..8].copy_from_slice(&userdata.to_le_bytes());
            e[8..10].copy_from_slice(&err.to_le_bytes());
            e[10] = *ty;
            gm::write(mem, gm::offset(out as u32, i as u64 * 32)?, &e)?;
        }
        gm::write_u32(mem, nevents as u32, events.len() as u32)?;
        Ok(slept)
    };
    match run(mem, st)? {
        None => Ok(()),
        Some(wait) => {
            let remaining = st.deadline.saturating_duration_since(Instant::now());
            if wait >= remaining {
                // Sleeping past the deadline ends the invocation with a
                // timeout, as its end would have.
                std::thread::sleep(remaining);
                return Err(errno::DEADLINE);
            }
            std::thread::sleep(wait);
            Ok(())
        }
    }
}

// ---- sockets: none -------------------------------------------------------

pub(super) fn sock_accept(
    _: &mut [u8],
    _: &mut View<'_>,
    _fd: i32,
    _flags: i32,
    _out: i32,
) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}

pub(super) fn sock_recv(
    _: &mut [u8],
    _: &mut View<'_>,
    _fd: i32,
    _a: i32,
    _b: i32,
    _c: i32,
    _d: i32,
    _e: i32,
) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}

pub(super) fn sock_send(
    _: &mut [u8],
    _: &mut View<'_>,
    _fd: i32,
    _a: i32,
    _b: i32,
    _c: i32,
    _d: i32,
) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}

pub(super) fn sock_shutdown(
    _: &mut [u8],
    _: &mut View<'_>,
    _fd: i32,
    _how: i32,
) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}
