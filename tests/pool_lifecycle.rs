//! Opening and closing pools leaves no threads and no file descriptors behind.
//! Alone in its binary: it counts the whole process's threads and descriptors.

mod common;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).expect("procfs").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_open_close_cycles_leave_nothing_behind() {
    let (_dir, path) = common::temp_db("cycles.db");
    // Warm up: the file exists, the runtime's threads are started.
    let db = aiolite::Database::open(&path).await.expect("open");
    db.execute("CREATE TABLE t(x)", ()).await.expect("create");
    db.close().await.expect("close");
    let (threads, fds) = (count("/proc/self/task"), count("/proc/self/fd"));

    for i in 0..1000 {
        let db = aiolite::Database::builder(&path)
            .readers(2)
            .open()
            .await
            .expect("open");
        if i % 100 == 0 {
            // Opened for real: 3 more threads while it is open.
            assert_eq!(count("/proc/self/task"), threads + 3);
            db.execute("INSERT INTO t VALUES (?)", (i,))
                .await
                .expect("write");
            db.fetch_all("SELECT * FROM t", ()).await.expect("read");
        }
        db.close().await.expect("close");
    }
    assert_eq!(count("/proc/self/task"), threads, "threads left behind");
    assert_eq!(count("/proc/self/fd"), fds, "file descriptors left behind");
}
