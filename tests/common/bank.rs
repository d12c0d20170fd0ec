//! A bank for tests with writer threads: accounts whose balances transfers
//! move, each transfer leaving a marker key (`xfer:...`, its value from, to
//! and amount), so that a state read back can be checked as one instant of
//! the bank: the balances are what the markers it holds give.

use std::collections::BTreeSet;

use ariesdb::{Db, Error, Txn};
use rand::rngs::StdRng;
use rand::Rng;

use super::Model;

/// `accounts` accounts `acct:NNN`, each starting at `start`; an account's
/// value is its balance (8 bytes, little-endian), padded to `value_len`.
pub struct Bank {
    pub accounts: u32,
    pub start: u64,
    pub value_len: usize,
}

impl Bank {
    pub fn acct(i: u32) -> Vec<u8> {
        format!("acct:{i:03}").into_bytes()
    }

    /// An account's value for `balance`.
    pub fn value(&self, balance: u64) -> Vec<u8> {
        let mut v = balance.to_le_bytes().to_vec();
        v.resize(self.value_len, b'.');
        v
    }

    /// The balance in an account's value (which must have its length).
    pub fn balance(&self, v: &[u8]) -> u64 {
        assert_eq!(v.len(), self.value_len, "an account's value");
        u64::from_le_bytes(v[..8].try_into().expect("8 bytes"))
    }

    /// Put every account at its starting balance.
    pub fn open_accounts(&self, tx: &mut Txn) -> Result<(), Error> {
        for i in 0..self.accounts {
            tx.put(Self::acct(i), self.value(self.start))?;
        }
        Ok(())
    }

    /// One transfer between two random accounts, read with
    /// `get_for_update`, with `marker` put to record it; then `then` may add
    /// to the transaction and says whether to commit it (else it aborts).
    /// Ok(true) if it committed.
    pub fn transfer(
        &self,
        db: &Db,
        rng: &mut StdRng,
        marker: &[u8],
        then: impl FnOnce(&mut Txn, &mut StdRng) -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        let (a, b) = (rng.gen_range(0..self.accounts), rng.gen_range(0..self.accounts));
        if a == b {
            return Ok(false);
        }
        let amount = rng.gen_range(1..50u64);
        let mut tx = db.begin()?;
        let ba = self.balance(&tx.get_for_update(Self::acct(a))?.expect("account"));
        let bb = self.balance(&tx.get_for_update(Self::acct(b))?.expect("account"));
        if ba < amount {
            tx.abort()?;
            return Ok(false);
        }
        tx.put(Self::acct(a), self.value(ba - amount))?;
        tx.put(Self::acct(b), self.value(bb + amount))?;
        let mut m = Vec::with_capacity(16);
        m.extend_from_slice(&a.to_le_bytes());
        m.extend_from_slice(&b.to_le_bytes());
        m.extend_from_slice(&amount.to_le_bytes());
        tx.put(marker, &m)?;
        if !then(&mut tx, rng)? {
            tx.abort()?;
            return Ok(false);
        }
        tx.commit()?;
        Ok(true)
    }

    /// `m` is one instant of the bank: every account is there with the
    /// balance its markers give from the starting balances (replayed in key
    /// order, not commit order: a balance may dip below zero on the way),
    /// and the total is kept. Returns the markers.
    pub fn check(&self, m: &Model, ctx: &str) -> BTreeSet<Vec<u8>> {
        let mut bal = vec![self.start as i64; self.accounts as usize];
        let mut markers = BTreeSet::new();
        for (k, v) in m.range(b"xfer:".to_vec()..b"xfer;".to_vec()) {
            let a = u32::from_le_bytes(v[0..4].try_into().unwrap()) as usize;
            let b = u32::from_le_bytes(v[4..8].try_into().unwrap()) as usize;
            let amount = u64::from_le_bytes(v[8..16].try_into().unwrap()) as i64;
            bal[a] -= amount;
            bal[b] += amount;
            markers.insert(k.clone());
        }
        let mut total = 0;
        for i in 0..self.accounts {
            let v = m.get(&Self::acct(i)).unwrap_or_else(|| panic!("{ctx}: account {i} is missing"));
            let got = self.balance(v);
            assert_eq!(got as i64, bal[i as usize], "{ctx}: account {i}: the balance is not what the transfers give");
            total += got;
        }
        assert_eq!(total, self.start * self.accounts as u64, "{ctx}: money created or destroyed");
        markers
    }
}
