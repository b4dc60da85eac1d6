struct NotARow {
    _x: i64,
}

#[derive(aiolite::FromRow)]
struct User {
    id: i64,
    #[aiolite(flatten)]
    extra: NotARow,
}

fn main() {}
