//! `use aiolite::prelude::*` leaves ordinary code as it was. Reported: the
//! prelude brought sea-query's blanket `ExprTrait`, after which `a.max(b)` on
//! `i64`, `String` or `NaiveDate` failed to compile (E0034) and `a.eq(&b)`
//! built an `Expr`. This file compiling is the test; the asserts pin the
//! meaning.

use aiolite::prelude::*;
use chrono::NaiveDate;

#[derive(Debug, PartialEq, aiolite::FromRow, aiolite::Model)]
#[aiolite(table = "people")]
struct Person {
    #[aiolite(primary_key)]
    id: i64,
    name: String,
    age: i64,
}

#[test]
fn std_methods_keep_their_meaning_under_the_prelude() {
    let (a, b) = (3_i64, 5_i64);
    assert_eq!(a.max(b), 5);
    assert_eq!(a.min(b), 3);
    assert!(!a.eq(&b));
    let (s, t) = (String::from("ann"), String::from("bob"));
    assert_eq!(s.clone().max(t.clone()), "bob");
    assert!(s.ne(&t));
    let d1 = NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");
    let d2 = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
    assert_eq!(d1.max(d2), d2);
    assert_eq!(1.5_f64.max(2.5), 2.5);
}

#[tokio::test]
async fn conditions_come_from_the_typed_columns() {
    let db = aiolite::Connection::open_in_memory().await.expect("open");
    db.execute_script(
        "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER NOT NULL);
         INSERT INTO people(name, age) VALUES ('Ann', 31), ('Bob', 17), ('Cy', 45);",
    )
    .await
    .expect("schema");
    let adults: Vec<Person> = db
        .query_all(
            Person::select()
                .and_where(PersonColumn::Age.gte(18))
                .and_where(PersonColumn::Name.like("%n%"))
                .order_by(PersonColumn::Id, Order::Asc),
        )
        .await
        .expect("select");
    assert_eq!(
        adults.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["Ann"]
    );
    let some: Vec<Person> = db
        .query_all(
            Person::select()
                .cond_where(
                    Condition::any()
                        .add(PersonColumn::Age.lt(18))
                        .add(PersonColumn::Id.is_in([3])),
                )
                .order_by(PersonColumn::Id, Order::Asc),
        )
        .await
        .expect("select");
    assert_eq!(some.iter().map(|p| p.id).collect::<Vec<_>>(), [2, 3]);
    // Comparing two columns as values still means PartialEq.
    assert!(PersonColumn::Age == PersonColumn::Age);
}
