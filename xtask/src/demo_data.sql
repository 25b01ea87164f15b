-- Synthetic patients for the demo: generated, not real people, no real PHI.
create table patients (
    id          serial primary key,
    mrn         text not null,
    full_name   text not null,
    ssn         text not null,
    birth_date  date not null,
    zip         text not null,
    diagnosis   text not null
);
insert into patients (mrn, full_name, ssn, birth_date, zip, diagnosis)
select 'MRN' || lpad(g::text, 6, '0'),
       (array['Ada','Grace','Alan','Edsger','Barbara','Donald'])[1 + g % 6] || ' ' ||
       (array['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth'])[1 + (g / 6) % 6],
       lpad(((g * 7919) % 900 + 100)::text, 3, '0') || '-' || lpad(((g * 31) % 99 + 1)::text, 2, '0')
           || '-' || lpad(((g * 104729) % 9999 + 1)::text, 4, '0'),
       date '1935-01-01' + (g * 97) % 30000,
       lpad(((g * 389) % 99999)::text, 5, '0'),
       (array['hypertension','type 2 diabetes','asthma','migraine','healthy'])[1 + g % 5]
from generate_series(1, 1000) as g;

-- Planner statistics: the row estimates approvers see (and rows_over rules use) count them.
analyze;
