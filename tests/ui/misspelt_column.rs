use aiolite::prelude::*;

#[derive(aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "users")]
struct User {
    #[aiolite(primary_key)]
    id: i64,
    age: i64,
}

fn main() {
    let _ = User::select().and_where(UserColumn::Agee.gt(18));
}
