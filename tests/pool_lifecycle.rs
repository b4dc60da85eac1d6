//! Opening and closing pools leaves no threads and no file descriptors behind.
//! Alone in its binary: it counts the whole process's threads and descriptors.

mod common;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).expect("procfs").count()
}

/// `dir`'s count once it is `expected`, or after 10 s, whatever it is then.
/// A thread that `join` has returned for can still be listed for a moment
/// (the kernel removes it from /proc after waking its joiner); on a loaded
/// machine that moment was seen, as one thread too many.
async fn settled(dir: &str, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = count(dir);
        if n == expected || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The count once it has held still for 50 ms (a warm-up's threads gone),
/// or after 10 s.
async fn steady(dir: &str) -> usize {
    let mut last = count(dir);
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let n = count(dir);
        if n == last {
            break;
        }
        last = n;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_open_close_cycles_leave_nothing_behind() {
    let (_dir, path) = common::temp_db("cycles.db");
    // Warm up: the file exists, the runtime's threads are started.
    let db = aiolite::Database::open(&path).await.expect("open");
    db.execute("CREATE TABLE t(x)", ()).await.expect("create");
    db.close().await.expect("close");
    let (threads, fds) = (steady("/proc/self/task").await, count("/proc/self/fd"));

    for i in 0..1000 {
        let db = aiolite::Database::builder(&path)
            .readers(2)
            .open()
            .await
            .expect("open");
        if i % 100 == 0 {
            // Opened for real: 3 more threads while it is open.
            assert_eq!(settled("/proc/self/task", threads + 3).await, threads + 3);
            db.execute("INSERT INTO t VALUES (?)", (i,))
                .await
                .expect("write");
            db.fetch_all("SELECT * FROM t", ()).await.expect("read");
        }
        db.close().await.expect("close");
    }
    assert_eq!(
        settled("/proc/self/task", threads).await,
        threads,
        "threads left behind"
    );
    assert_eq!(count("/proc/self/fd"), fds, "file descriptors left behind");
}
