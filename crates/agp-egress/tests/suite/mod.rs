mod inspect;
mod proxy;
mod tls_fixture;
