// SQL is text: anything else is refused with a message that says what to pass.
async fn demo(db: aiolite::Database) -> aiolite::Result<()> {
    let id = 7;
    db.execute(id, ()).await?;
    Ok(())
}

fn main() {
    let _ = demo;
}
