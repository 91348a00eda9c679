//! Named counters, for the whole crate: [`named_counters!`] defines a struct of `u64` counters
//! from one table (each field, its doc and its name in `vtep stats`), with adding up (`+=`, to
//! sum workers or sockets), `named()` (every counter with its name) and `DESCRIBED` (every name
//! with its doc, the metrics' help). Adding a counter is
//! then one line in the table and its count where it happens.

/// Defines a counter struct from one table: `name => "key",` per counter, docs above each.
macro_rules! named_counters {
    ($(#[$meta:meta])* pub struct $name:ident {
        $($(#[doc = $doc:literal])* $field:ident => $key:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl core::ops::AddAssign for $name {
            fn add_assign(&mut self, other: $name) {
                $(self.$field += other.$field;)*
            }
        }

        impl $name {
            /// Every counter with its name in `vtep stats`, in the order of the table.
            pub fn named(&self) -> [(&'static str, u64); [$($key),*].len()] {
                [$(($key, self.$field)),*]
            }

            /// Every counter's name with what it counts (its doc comment, one line), for the
            /// metrics' help texts.
            pub const DESCRIBED: [(&'static str, &'static str); [$($key),*].len()] =
                [$(($key, concat!($($doc),*))),*];
        }
    };
}

pub(crate) use named_counters;

#[cfg(test)]
// The table's struct and its method are `pub`, as every user's are.
#[allow(unreachable_pub)]
mod tests {
    named_counters! {
        /// Two counters.
        pub struct Pair {
            /// One.
            one => "pair_one",
            /// Two.
            two => "pair_two",
        }
    }

    #[test]
    fn a_table_names_and_adds_up() {
        let mut a = Pair { one: 1, two: 2 };
        a += Pair { one: 10, two: 20 };
        assert_eq!(a.named(), [("pair_one", 11), ("pair_two", 22)]);
        assert_eq!(
            Pair::DESCRIBED,
            [("pair_one", " One."), ("pair_two", " Two.")]
        );
    }
}
