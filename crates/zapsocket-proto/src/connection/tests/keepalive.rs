//! Keepalive: pings at the interval, a silent peer times out, a talking peer does not.
//! Time is an argument: every instant is `t0` plus a number of seconds.

use std::time::{Duration, Instant};

use super::*;

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

/// A server with a ping every 10 s and the default pong timeout (20 s).
fn keepalive_server() -> Connection {
    Connection::new(Role::Server, Config::default().ping_interval(Some(Duration::from_secs(10))))
}

fn pings_sent(conn: &mut Connection) -> usize {
    sent_frames(conn).iter().filter(|f| f.b0 == 0x89).count()
}

#[test]
fn no_timer_without_a_ping_interval() {
    let t0 = Instant::now();
    let mut server = conn(Role::Server);
    assert_eq!(server.handle_timeout(t0), Ok(()));
    assert_eq!(server.poll_timeout(), None);
    assert_eq!(server.handle_timeout(secs(t0, 3600)), Ok(()));
    assert!(server.outbound().is_empty());
}

#[test]
fn a_ping_is_sent_at_each_interval() {
    let t0 = Instant::now();
    let mut server = keepalive_server();
    server.handle_timeout(t0).unwrap();
    assert_eq!(server.poll_timeout(), Some(secs(t0, 10)));
    server.handle_timeout(secs(t0, 9)).unwrap();
    assert_eq!(pings_sent(&mut server), 0);
    server.handle_timeout(secs(t0, 10)).unwrap();
    assert_eq!(sent_frames(&mut server), [Frame { b0: 0x89, masked: false, payload: vec![] }]);
    // The peer answers; the next ping comes one interval later.
    feed_all(&mut server, &from_peer(Role::Server, 0x8a, b""));
    server.handle_timeout(secs(t0, 15)).unwrap();
    assert_eq!(pings_sent(&mut server), 0);
    server.handle_timeout(secs(t0, 20)).unwrap();
    assert_eq!(pings_sent(&mut server), 1);
}

#[test]
fn a_silent_peer_times_out_with_the_default_pong_timeout() {
    // The pong timeout (20 s) is longer than the interval (10 s): the pings sent while
    // waiting must not push the deadline back.
    let t0 = Instant::now();
    let mut server = keepalive_server();
    server.handle_timeout(t0).unwrap();
    let mut result = Ok(());
    let mut at = 0;
    while result.is_ok() && at <= 120 {
        at += 1;
        result = server.handle_timeout(secs(t0, at));
    }
    assert_eq!(result, Err(Error::KeepaliveTimeout));
    assert_eq!(at, 30, "first ping at 10 s, pong deadline 20 s later");
    assert_eq!(server.state(), State::Closed);
    assert_eq!(server.poll_timeout(), None);
}

#[test]
fn a_silent_peer_times_out_with_a_short_pong_timeout() {
    let t0 = Instant::now();
    let config =
        Config::default().ping_interval(Some(Duration::from_secs(10))).pong_timeout(Duration::from_secs(3));
    let mut client = Connection::new(Role::Client, config);
    client.handle_timeout(t0).unwrap();
    client.handle_timeout(secs(t0, 10)).unwrap();
    assert_eq!(client.poll_timeout(), Some(secs(t0, 13)));
    assert_eq!(client.handle_timeout(secs(t0, 12)), Ok(()));
    assert_eq!(client.handle_timeout(secs(t0, 13)), Err(Error::KeepaliveTimeout));
    assert_eq!(client.feed_eof(), Ok(()), "already closed");
}

#[test]
fn a_peer_that_sends_anything_stays_alive() {
    let t0 = Instant::now();
    let mut server = keepalive_server();
    server.handle_timeout(t0).unwrap();
    for s in 1..=300 {
        if s % 7 == 0 {
            // Data, not a pong: any bytes count as a sign of life.
            feed_all(&mut server, &from_peer(Role::Server, 0x81, b"still here"));
        }
        assert_eq!(server.handle_timeout(secs(t0, s)), Ok(()), "at {s} s");
    }
    assert_eq!(server.state(), State::Open);
    assert!(pings_sent(&mut server) >= 29);
}

#[test]
fn a_partial_frame_counts_as_a_sign_of_life_once_only() {
    // A peer that sent half a frame and went silent must still time out, however often
    // the driver polls.
    let t0 = Instant::now();
    let mut server = keepalive_server();
    server.handle_timeout(t0).unwrap();
    server.handle_timeout(secs(t0, 10)).unwrap();
    feed_all(&mut server, &[0x81]);
    let mut result = Ok(());
    let mut at = 10;
    while result.is_ok() && at <= 120 {
        at += 1;
        assert_eq!(server.poll_event(), None);
        result = server.handle_timeout(secs(t0, at));
    }
    assert_eq!(result, Err(Error::KeepaliveTimeout));
    assert!(at <= 50, "timed out at {at} s");
}

#[test]
fn bytes_written_into_the_read_buffer_count_as_a_sign_of_life() {
    let t0 = Instant::now();
    let config =
        Config::default().ping_interval(Some(Duration::from_secs(10))).pong_timeout(Duration::from_secs(5));
    let mut server = Connection::new(Role::Server, config);
    server.handle_timeout(t0).unwrap();
    server.handle_timeout(secs(t0, 10)).unwrap();
    server.read_buffer().extend_from_slice(&from_peer(Role::Server, 0x8a, b""));
    assert_eq!(poll_all(&mut server), [Ok(Event::Pong(Bytes::new()))]);
    assert_eq!(server.handle_timeout(secs(t0, 15)), Ok(()));
    assert_eq!(server.state(), State::Open);
}

#[test]
fn keepalive_stops_pinging_once_closing() {
    let t0 = Instant::now();
    let config =
        Config::default().ping_interval(Some(Duration::from_secs(10))).close_timeout(Duration::from_secs(30));
    let mut server = Connection::new(Role::Server, config);
    server.handle_timeout(t0).unwrap();
    server.close(secs(t0, 1), CloseCode::NORMAL, "").unwrap();
    take_outbound(&mut server);
    for s in [5, 10, 20, 30] {
        assert_eq!(server.handle_timeout(secs(t0, s)), Ok(()));
    }
    assert_eq!(pings_sent(&mut server), 0);
    assert_eq!(server.handle_timeout(secs(t0, 31)), Err(Error::CloseTimeout));
}
