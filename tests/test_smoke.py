def test_register_and_mail(client, last_confirmation):
    r = client.post("/api/register/", json={"username": "u", "email": "u@example.com",
                                            "password": "Str0ng-passphrase"})
    assert r.status_code == 201
    link, token, code = last_confirmation()
    assert len(code) == 6
