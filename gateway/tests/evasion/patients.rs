//! Synthetic patients with random PHI, the schema around them (views, functions, a scratch
//! table), and the check that none of their values appears in what a client received.

use std::fmt::Write;

pub struct Patients {
    pub seed: u64,
    rows: Vec<Patient>,
}

struct Patient {
    full_name: String,
    ssn: String,
    mrn: String,
    birth_date: String,
    street: String,
    zip: String,
    phone: String,
    email: String,
    age: u32,
    notes: String,
}

/// xorshift64*: small, seedable, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    /// A capitalised made-up word (never a dictionary word a query or message would hold).
    fn word(&mut self, len: usize) -> String {
        let mut word: String = (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect();
        word[..1].make_ascii_uppercase();
        word
    }
}

impl Patients {
    pub fn random(count: usize) -> Self {
        let seed = std::env::var("TOLLGATE_EVASION_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).expect("random seed");
                u64::from_le_bytes(bytes) | 1
            });
        let mut rng = Rng(seed);
        let rows = (0..count)
            .map(|_| Patient {
                full_name: format!("{} {}", rng.word(7), rng.word(9)),
                ssn: format!("{}-{}-{}", rng.digits(3), rng.digits(2), rng.digits(4)),
                mrn: format!("MRN{}", rng.digits(8)),
                // Never 1 January, which is what `year` shows (the year itself may show).
                birth_date: format!(
                    "{}-{:02}-{:02}",
                    1930 + rng.below(80),
                    1 + rng.below(12),
                    2 + rng.below(27)
                ),
                street: format!("{} {} Street", 10 + rng.below(9000), rng.word(8)),
                // Never ending in 00, which is what zip3 shows.
                zip: format!("{:03}{:02}", 100 + rng.below(899), 11 + rng.below(88)),
                phone: format!("555-{}-{}", rng.digits(3), rng.digits(4)),
                email: format!("{}.{}@{}.example", rng.word(6), rng.word(6), rng.word(5))
                    .to_lowercase(),
                age: 18 + rng.below(90) as u32,
                notes: format!("Follow-up for {} condition", rng.word(10)),
            })
            .collect();
        Self { seed, rows }
    }

    pub fn setup_sql(&self) -> String {
        let mut sql = String::from(
            "CREATE TABLE patients (id int PRIMARY KEY, full_name text, ssn text, mrn text,
                 birth_date date, street text, zip text, phone text, email text, age int);
             CREATE TABLE visits (id int PRIMARY KEY, patient_id int, notes text);
             CREATE TABLE intake (id int PRIMARY KEY, ssn text UNIQUE);
             CREATE VIEW patient_contacts AS SELECT full_name AS who, phone, email FROM patients;
             CREATE VIEW contact_names AS SELECT who FROM patient_contacts;
             CREATE FUNCTION patient_ssn(int) RETURNS text LANGUAGE sql
                 AS 'SELECT ssn FROM patients WHERE id = $1';
             CREATE FUNCTION noisy(int) RETURNS int LANGUAGE plpgsql AS $$
                 BEGIN RAISE NOTICE 'ssn is %', (SELECT ssn FROM patients WHERE id = $1);
                 RETURN 1; END $$;\n",
        );
        for (index, p) in self.rows.iter().enumerate() {
            let id = index + 1;
            writeln!(
                sql,
                "INSERT INTO patients VALUES ({id}, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', {});
                 INSERT INTO visits VALUES ({id}, {id}, '{}');",
                p.full_name, p.ssn, p.mrn, p.birth_date, p.street, p.zip, p.phone, p.email, p.age,
                p.notes
            )
            .expect("write to a string");
        }
        sql.push_str("INSERT INTO intake SELECT id, ssn FROM patients;\n");
        // Planner statistics hold sample values (pg_stats).
        sql.push_str("ANALYZE patients;\n");
        sql
    }

    pub fn forbidden_values(&self) -> Forbidden {
        let mut long = Vec::new();
        let mut short = Vec::new();
        for p in &self.rows {
            long.extend([
                p.full_name.clone(),
                p.ssn.clone(),
                p.mrn.clone(),
                p.birth_date.clone(),
                p.street.clone(),
                p.phone.clone(),
                p.email.clone(),
                p.notes.clone(),
            ]);
            // Parts of a name are PHI too (the first name alone identifies with the rest).
            long.extend(p.full_name.split(' ').map(str::to_owned));
            // Ages are left out: as bare numbers they collide with ids and counts (age_90 is
            // covered by the mask unit tests).
            short.push(p.zip.clone());
        }
        Forbidden { long, short }
    }
}

/// Values that must not reach a client: long ones anywhere in the output, short ones (ZIP
/// codes) as a whole token, since their digits may occur by chance inside other values.
pub struct Forbidden {
    long: Vec<String>,
    short: Vec<String>,
}

impl Forbidden {
    /// The first forbidden value in a client's output: long values anywhere, short ones as a
    /// whole token of a data, error or notice line.
    pub fn leaked_in<'a>(&'a self, output: &str) -> Option<&'a str> {
        self.leaked_long_in(output).or_else(|| {
            output
                .lines()
                .filter(|line| ["D ", "d ", "E ", "N "].iter().any(|p| line.starts_with(p)))
                .find_map(|line| {
                    let tokens: Vec<&str> = without_sqlstate(line)
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .filter(|t| !t.is_empty())
                        .collect();
                    self.short.iter().find(|v| tokens.contains(&v.as_str()))
                })
                .map(String::as_str)
        })
    }

    /// Long values only, for text full of unrelated numbers (ports, ids, sizes).
    pub fn leaked_long_in<'a>(&'a self, text: &str) -> Option<&'a str> {
        self.long
            .iter()
            .find(|v| text.contains(v.as_str()))
            .map(String::as_str)
    }
}

/// An error or notice line (`E ERROR 22012 division by zero`) without its severity and
/// SQLSTATE: a five-digit code such as 22012 is not data, though it may equal a ZIP code.
fn without_sqlstate(line: &str) -> &str {
    if !(line.starts_with("E ") || line.starts_with("N ")) {
        return line;
    }
    line.splitn(4, ' ').nth(3).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlstate_equal_to_a_zip_code_is_not_a_leak_but_the_zip_in_a_message_is() {
        let forbidden = Forbidden {
            long: Vec::new(),
            short: vec!["22012".into()],
        };
        assert_eq!(forbidden.leaked_in("E ERROR 22012 division by zero"), None);
        assert_eq!(
            forbidden.leaked_in("E ERROR 23505 key (zip)=(22012) exists"),
            Some("22012")
        );
        assert_eq!(
            forbidden.leaked_in("N NOTICE 00000 zip 22012"),
            Some("22012")
        );
        assert_eq!(forbidden.leaked_in("D 22012|x"), Some("22012"));
    }
}
