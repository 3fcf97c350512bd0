//! TPC-H data as Parquet files, generated in-process with the `tpchgen` crates (the same rows
//! as the reference `dbgen`), for the warehouse benchmark and tests. Each table is streamed
//! from the generator to its file in batches, so memory does not grow with the scale factor.

use std::path::{Path, PathBuf};

use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::error::{Error, Result};

/// The eight TPC-H tables with their primary keys, in the order they are generated.
pub const TABLES: [(&str, &[&str]); 8] = [
    ("region", &["r_regionkey"]),
    ("nation", &["n_nationkey"]),
    ("supplier", &["s_suppkey"]),
    ("customer", &["c_custkey"]),
    ("part", &["p_partkey"]),
    ("partsupp", &["ps_partkey", "ps_suppkey"]),
    ("orders", &["o_orderkey"]),
    ("lineitem", &["l_orderkey", "l_linenumber"]),
];

/// One generated file.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The table.
    pub table: &'static str,
    /// The file (`<dir>/<table>/<table>.parquet`).
    pub path: PathBuf,
    /// Its rows.
    pub rows: u64,
}

/// Writes the eight tables at scale factor `sf` as `<dir>/<table>/<table>.parquet`, calling
/// `progress` after each table. Blocking work: call it from a blocking thread.
pub fn generate(dir: &Path, sf: f64, progress: &dyn Fn(&Generated)) -> Result<Vec<Generated>> {
    if !(sf > 0.0 && sf <= 1000.0) {
        return Err(Error::BadInput(format!(
            "the scale factor must be above 0 and at most 1000 (got {sf})"
        )));
    }
    let mut out = Vec::new();
    for (table, _) in TABLES {
        let folder = dir.join(table);
        std::fs::create_dir_all(&folder)
            .map_err(|e| Error::Upstream(format!("cannot create {}: {e}", folder.display())))?;
        let path = folder.join(format!("{table}.parquet"));
        // Smaller scale factors than 1 are allowed for tests; the generators take them as they
        // are (lineitem then has about 6,000,000 × sf rows).
        let batches: Batches = match table {
            "region" => Box::new(RegionArrow::new(RegionGenerator::new(sf, 1, 1))),
            "nation" => Box::new(NationArrow::new(NationGenerator::new(sf, 1, 1))),
            "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(sf, 1, 1))),
            "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(sf, 1, 1))),
            "part" => Box::new(PartArrow::new(PartGenerator::new(sf, 1, 1))),
            "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1))),
            "orders" => Box::new(OrderArrow::new(OrderGenerator::new(sf, 1, 1))),
            _ => Box::new(LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))),
        };
        let rows = write_parquet(&path, batches)?;
        let g = Generated { table, path, rows };
        progress(&g);
        out.push(g);
    }
    Ok(out)
}

type Batches = Box<
    dyn Iterator<
        Item = std::result::Result<
            deltalake::arrow::record_batch::RecordBatch,
            deltalake::arrow::error::ArrowError,
        >,
    >,
>;

fn write_parquet(path: &Path, batches: Batches) -> Result<u64> {
    let mut file = super::typed::ParquetFile::new(path.to_path_buf());
    for batch in batches {
        let batch =
            batch.map_err(|e| Error::Upstream(format!("generating {}: {e}", path.display())))?;
        file.write(&batch)?;
    }
    match file.close()? {
        Some((_, rows)) => Ok(rows),
        None => Err(Error::Upstream(format!(
            "cannot write {}: the generator produced no rows",
            path.display()
        ))),
    }
}
