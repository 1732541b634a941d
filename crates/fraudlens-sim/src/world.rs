//! The simulated world, laid out once from the seed: terminals on a 100×100
//! map (merchant category, country, online or not), customers with a home and
//! a spending profile, and the lookups a day's generation needs (terminals
//! near a customer, online terminals, high-risk terminals).

use crate::SimConfig;
use crate::rng::Rng;

/// Everything the simulation draws from: terminals, customers and each
/// customer's random stream.
pub(crate) struct World {
    pub(crate) terminals: Terminals,
    pub(crate) customers: Vec<Customer>,
    /// One stream per customer, so a customer's purchases do not depend on the others'.
    pub(crate) customer_rngs: Vec<Rng>,
}

/// A card holder: where and how they spend, and the scenarios running on their card.
pub(crate) struct Customer {
    pub(crate) mean_amount: f64,
    pub(crate) std_amount: f64,
    pub(crate) tx_per_day: f64,
    /// Centre of the customer's day, in seconds after midnight.
    pub(crate) usual_time: f64,
    pub(crate) contactless_share: f64,
    /// Physical terminals within the radius of home.
    pub(crate) nearby: Vec<u32>,
    pub(crate) favourite_online: [u32; 3],
    /// Last day of a stolen-card spree, while it runs.
    pub(crate) stolen_until: Option<u32>,
    /// Last day of an account takeover, while it runs.
    pub(crate) takeover_until: Option<u32>,
}

/// Every terminal, and the indexes of the online and high-risk ones.
pub(crate) struct Terminals {
    pub(crate) all: Vec<Terminal>,
    pub(crate) online: Vec<u32>,
    pub(crate) high_risk: Vec<u32>,
}

/// A merchant's card terminal (or online checkout).
pub(crate) struct Terminal {
    pub(crate) mcc: &'static str,
    pub(crate) country: &'static str,
    pub(crate) online: bool,
}

impl World {
    /// Places the terminals (from one stream), then each customer (from their own).
    pub(crate) fn lay_out(config: &SimConfig) -> Self {
        let mut layout_rng = Rng::new(config.seed, u64::MAX);
        let mut terminals = Vec::with_capacity(config.terminals as usize);
        let mut positions = Vec::with_capacity(config.terminals as usize);
        for _ in 0..config.terminals {
            let (x, y) = (layout_rng.range(0.0, 100.0), layout_rng.range(0.0, 100.0));
            let online = layout_rng.chance(0.15);
            let mcc = weighted(
                &mut layout_rng,
                if online { &ONLINE_MCC[..] } else { &PHYSICAL_MCC[..] },
            );
            terminals.push(Terminal {
                mcc,
                country: country_at(x, y),
                online,
            });
            positions.push((x, y));
        }
        let online_terminals: Vec<u32> = (0..config.terminals)
            .filter(|t| terminals[*t as usize].online)
            .collect();
        let high_risk_terminals: Vec<u32> = (0..config.terminals)
            .filter(|t| HIGH_RISK_MCC.contains(&terminals[*t as usize].mcc))
            .collect();
        let grid = Grid::new(&positions, &terminals, config.radius);

        let mut customers = Vec::with_capacity(config.customers as usize);
        let mut customer_rngs = Vec::with_capacity(config.customers as usize);
        for idx in 0..config.customers {
            let mut rng = Rng::new(config.seed, u64::from(idx));
            let (x, y) = (rng.range(0.0, 100.0), rng.range(0.0, 100.0));
            let mean_amount = rng.range(5.0, 100.0);
            let nearby = grid.nearby(x, y, config.radius, &positions);
            let mut favourite_online = [0; 3];
            for slot in &mut favourite_online {
                *slot = pick(&mut rng, &online_terminals).unwrap_or(0);
            }
            customers.push(Customer {
                mean_amount,
                std_amount: mean_amount / 2.0,
                tx_per_day: rng.range(0.0, 4.0),
                usual_time: rng.range(9.0, 17.0) * 3600.0,
                contactless_share: rng.range(0.2, 0.8),
                nearby,
                favourite_online,
                stolen_until: None,
                takeover_until: None,
            });
            customer_rngs.push(rng);
        }
        Self {
            terminals: Terminals {
                all: terminals,
                online: online_terminals,
                high_risk: high_risk_terminals,
            },
            customers,
            customer_rngs,
        }
    }
}

/// One of `items`, uniformly; `None` when there are none.
pub(crate) fn pick(rng: &mut Rng, items: &[u32]) -> Option<u32> {
    (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize])
}

const COUNTRIES: [&str; 16] = [
    "DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES", "PL", "CZ", "DK", "SE", "PT", "IE", "LU", "GB",
];

/// Merchant categories of physical terminals, with weights.
const PHYSICAL_MCC: [(&str, u32); 12] = [
    ("5411", 25), // grocery
    ("5812", 15), // restaurants
    ("5541", 10), // fuel
    ("5311", 8),  // department stores
    ("5912", 8),  // pharmacies
    ("5999", 8),  // miscellaneous retail
    ("4111", 6),  // transit
    ("5651", 6),  // clothing
    ("5814", 4),  // fast food
    ("7011", 4),  // hotels
    ("5732", 4),  // electronics
    ("5944", 2),  // jewellery
];

/// Merchant categories of online merchants, with weights.
const ONLINE_MCC: [(&str, u32); 8] = [
    ("5311", 20), // department stores
    ("5999", 20), // miscellaneous retail
    ("5732", 15), // electronics
    ("4722", 13), // travel
    ("5967", 10), // direct marketing
    ("4829", 8),  // money transfer
    ("7995", 8),  // gambling
    ("6051", 6),  // quasi-cash, crypto
];

/// Categories where stolen cards are cashed out.
const HIGH_RISK_MCC: [&str; 5] = ["5732", "5944", "6051", "4829", "7995"];

fn weighted(rng: &mut Rng, table: &[(&'static str, u32)]) -> &'static str {
    let total: u32 = table.iter().map(|(_, weight)| weight).sum();
    let mut ticket = rng.below(u64::from(total)) as u32;
    for (value, weight) in table {
        if ticket < *weight {
            return value;
        }
        ticket -= weight;
    }
    table[table.len() - 1].0
}

fn country_at(x: f64, y: f64) -> &'static str {
    let col = ((x / 25.0) as usize).min(3);
    let row = ((y / 25.0) as usize).min(3);
    COUNTRIES[row * 4 + col]
}

/// Physical terminals bucketed by map cell, for radius queries.
struct Grid {
    cell: f64,
    n_cells: usize,
    cells: Vec<Vec<u32>>,
}

impl Grid {
    fn new(positions: &[(f64, f64)], terminals: &[Terminal], radius: f64) -> Self {
        let n_cells = ((100.0 / radius).ceil() as usize).clamp(1, 1000);
        let cell = 100.0 / n_cells as f64;
        let mut cells = vec![Vec::new(); n_cells * n_cells];
        for (idx, ((x, y), terminal)) in positions.iter().zip(terminals).enumerate() {
            if !terminal.online {
                let (cx, cy) = (
                    ((x / cell) as usize).min(n_cells - 1),
                    ((y / cell) as usize).min(n_cells - 1),
                );
                cells[cy * n_cells + cx].push(idx as u32);
            }
        }
        Self { cell, n_cells, cells }
    }

    fn nearby(&self, x: f64, y: f64, radius: f64, positions: &[(f64, f64)]) -> Vec<u32> {
        let reach = (radius / self.cell).ceil() as i64;
        let (cx, cy) = ((x / self.cell) as i64, (y / self.cell) as i64);
        let mut found = Vec::new();
        for gy in (cy - reach).max(0)..=(cy + reach).min(self.n_cells as i64 - 1) {
            for gx in (cx - reach).max(0)..=(cx + reach).min(self.n_cells as i64 - 1) {
                for terminal in &self.cells[gy as usize * self.n_cells + gx as usize] {
                    let (tx, ty) = positions[*terminal as usize];
                    if (tx - x) * (tx - x) + (ty - y) * (ty - y) <= radius * radius {
                        found.push(*terminal);
                    }
                }
            }
        }
        found.sort_unstable();
        found
    }
}
