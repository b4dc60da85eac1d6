//! Create, read, update and delete products.
//!
//!     cargo run --example crud

use aiolite::{Connection, Row};

#[derive(Debug)]
struct Product {
    id: i64,
    name: String,
    price: f64,
}

impl TryFrom<&Row> for Product {
    type Error = aiolite::Error;
    fn try_from(row: &Row) -> aiolite::Result<Self> {
        Ok(Product {
            id: row.get("id")?,
            name: row.get("name")?,
            price: row.get("price")?,
        })
    }
}

#[tokio::main]
async fn main() -> aiolite::Result<()> {
    let path = std::env::temp_dir().join("aiolite-crud.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let db = Connection::open(&path).await?;
    db.execute_script(
        "CREATE TABLE products (
             id INTEGER PRIMARY KEY,
             name TEXT NOT NULL UNIQUE,
             price REAL NOT NULL CHECK (price >= 0)
         )",
    )
    .await?;

    // Create
    for (name, price) in [("Laptop", 999.99), ("Mouse", 25.50), ("Keyboard", 75.00)] {
        let id = db
            .execute_insert(
                "INSERT INTO products (name, price) VALUES (?, ?)",
                (name, price),
            )
            .await?;
        println!("Created product {id}: {name} at ${price:.2}");
    }

    // Read one
    let laptop = Product::try_from(
        &db.fetch_one(
            "SELECT id, name, price FROM products WHERE name = ?",
            ("Laptop",),
        )
        .await?,
    )?;
    println!("Fetched: {laptop:?}");

    // Read many
    println!("Products under $100:");
    for row in db
        .fetch_all(
            "SELECT id, name, price FROM products WHERE price < ? ORDER BY price",
            (100.0,),
        )
        .await?
    {
        let p = Product::try_from(&row)?;
        println!("  {} - {} (${:.2})", p.id, p.name, p.price);
    }

    // Update
    let changed = db
        .execute(
            "UPDATE products SET price = ? WHERE name = ?",
            (899.99, "Laptop"),
        )
        .await?;
    println!("Updated {changed} product(s): Laptop is now $899.99");

    // Delete
    let deleted = db
        .execute("DELETE FROM products WHERE name = ?", ("Mouse",))
        .await?;
    println!("Deleted {deleted} product(s)");

    // A constraint violation is an error you can branch on.
    match db
        .execute(
            "INSERT INTO products (name, price) VALUES (?, ?)",
            ("Laptop", 1.0),
        )
        .await
    {
        Err(e) if e.is_unique_violation() => println!("Duplicate insert refused: {e}"),
        other => println!("Unexpected outcome of a duplicate insert: {other:?}"),
    }

    let left: i64 = db
        .fetch_one("SELECT count(*) FROM products", ())
        .await?
        .get(0)?;
    println!("Products remaining: {left}");
    db.close().await
}
