"""The shared token bucket, on a real Redis."""
import threading
import time

import pytest
import redis

from hub.ratelimit import TokenBucket


@pytest.fixture
def r(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()


def test_burst_is_available_at_once_then_callers_wait(r):
    bucket = TokenBucket(r, "rl:burst", rate=0.01, burst=20)
    assert all(bucket.try_acquire() == 0 for _ in range(20))
    wait = bucket.try_acquire()
    assert wait > 50  # ~100 s for the next token at 0.01/s
    assert bucket.acquire(timeout=0.05) is False


def test_acquire_waits_for_a_refill(r):
    bucket = TokenBucket(r, "rl:wait", rate=50.0, burst=1)
    assert bucket.acquire(timeout=0)
    assert bucket.acquire(timeout=5)  # waits ~20 ms for the next token


def test_keys_are_independent(r):
    one = TokenBucket(r, "rl:one", rate=0.01, burst=1)
    two = TokenBucket(r, "rl:two", rate=0.01, burst=1)
    assert one.try_acquire() == 0 and two.try_acquire() == 0
    assert one.try_acquire() > 0 and two.try_acquire() > 0


def test_buckets_in_many_clients_share_one_budget(r, redis_server):
    # Eight callers with their own Redis connections (as separate processes would have): the
    # number of tokens granted never exceeds the burst plus what the rate refilled meanwhile.
    granted = []
    start = time.monotonic()

    def take():
        bucket = TokenBucket(redis.Redis.from_url(redis_server.url), "rl:shared", rate=5.0, burst=10)
        for _ in range(10):
            if bucket.try_acquire() == 0:
                granted.append(1)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert 10 <= len(granted) <= 10 + int(5.0 * elapsed) + 1


def test_rejects_nonsense(r):
    with pytest.raises(ValueError):
        TokenBucket(r, "rl:x", rate=0, burst=1)


def test_reservations_queue_up_behind_each_other_at_the_rate(r):
    bucket = TokenBucket(r, "rl:reserve", rate=10.0, burst=2)
    assert bucket.reserve(2) == (True, 0.0)  # the burst, at once
    waits = [bucket.reserve(1)[1] for _ in range(3)]
    assert [round(w, 1) for w in waits] == [0.1, 0.2, 0.3]  # each due 1/rate after the last
    reserved, wait = bucket.reserve(3)
    assert reserved and round(wait, 1) == 0.6  # three more: the last of them due then
    # Plain callers wait behind the reservations too: the bucket is 6 tokens in debt.
    assert bucket.try_acquire() > 0.6


def test_a_reservation_further_away_than_allowed_reserves_nothing(r):
    bucket = TokenBucket(r, "rl:far", rate=1.0, burst=1)
    assert bucket.reserve(1) == (True, 0.0)
    reserved, wait = bucket.reserve(10, max_wait=5)
    assert not reserved and round(wait) == 10
    reserved, wait = bucket.reserve(1, max_wait=5)  # the refused ten took nothing
    assert reserved and round(wait) == 1


def test_a_plain_take_does_not_shorten_the_memory_of_a_debt(r):
    """Reservations put the bucket in debt; a caller who only asks must not make it expire (and
    come back full) before the debt is paid."""
    bucket = TokenBucket(r, "rl:debt", rate=10.0, burst=2)
    assert bucket.reserve(30)[0]  # 2.8 s of debt
    assert bucket.try_acquire() > 2.5
    assert r.pttl("rl:debt") > 2800
