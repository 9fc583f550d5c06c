-- transactional: false
-- Migration: locale independent case folding
-- Created: 2026-12-06T15:51:32Z
-- Description: an email, and a project name per user, is taken in every letter case, the
--   same way on every server. The unique indexes were on lower(), which follows the
--   database's locale: in the C locale it folds A-Z only (ÉLODIE and élodie were two
--   users), and no locale folds ß to ss. They are now on coderunner_fold(), which folds by
--   fixed tables: NFKD, Unicode full case folding, NFKC. ICU would not do: the embedded
--   server is built without it. Not in a transaction, so the indexes are built CONCURRENTLY
--   while writes go on; every statement may run again after a failure part-way.

-- For every code point (tests/test_case_folding.py checks each) this equals Python's
--   unicodedata.normalize("NFKC", unicodedata.normalize("NFKD", s).casefold())
-- with the Unicode 14.0 tables of Python 3.11: NFKD splits accents and compatibility
-- forms off (fullwidth ＡＢＣ is ABC, ﬁ is fi), so ß and ẞ are the only letters left that fold
-- to more than one; the translate() tables hold the letters that fold to one, each group
-- followed by its folded letter mapped to itself and the characters common in addresses
-- first, since translate() scans the table for every character until it matches. ASCII
-- text (most addresses) takes the short way. PL/pgSQL, not a SQL function: PostgreSQL plans
-- a SQL function's body afresh for every statement that calls it, and with tables this size
-- that made each INSERT 8 times slower (0.94 ms against 0.12 ms with lower(), pgbench);
-- PL/pgSQL keeps the plan for the session (0.10 ms). Every name is schema-qualified, so no
-- search_path can change what the function calls when an index is rebuilt.
CREATE OR REPLACE FUNCTION coderunner_fold(value text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $fold$
BEGIN
    RETURN CASE
    WHEN pg_catalog.octet_length(value) OPERATOR(pg_catalog.=) pg_catalog.char_length(value)
        THEN pg_catalog.translate(value, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
    ELSE normalize(pg_catalog.translate(
        pg_catalog.replace(pg_catalog.replace(normalize(value, NFKD), 'ß', 'ss'), 'ẞ', 'ss'),
        '0123456789.@_+- AaBbCcDdEeFfGgHhIiJjKkLl'
        'MmNnOoPpQqRrSsTtUuVvWwXxYyZzÆæÐðØøÞþĐđĦħ'
        'ŁłŊŋŒœŦŧɃƀƂƃƄƅƇƈƋƌƑƒǶƕƘƙȽƚȠƞƢƣƤƥƧƨƬƭƳƴƵƶ'
        'ƸƹƼƽǷƿƎǝǤǥȜȝȢȣȤȥȻȼⱾȿⱿɀɁɂɆɇɈɉɊɋɌɍɎɏⱯɐⱭɑⱰɒ'
        'ƁɓƆɔƉɖƊɗƏəƐɛꞫɜƓɠꞬɡƔɣꞍɥꞪɦƗɨƖɩꞮɪⱢɫꞭɬƜɯⱮɱƝɲ'
        'ƟɵⱤɽƦʀꟅʂƩʃꞱʇƮʈɄʉƱʊƲʋɅʌƷʒꞲʝꞰʞͰͱͲͳͶͷϽͻϾͼϿͽ'
        'ΑαΒβΓγΔδΕεΖζΗηΘθͅΙιΚκΛλΜμΝνΞξΟοΠπΡρΣςσΤτ'
        'ΥυΦφΧχΨψΩωϏϗϘϙϚϛϜϝϞϟϠϡϢϣϤϥϦϧϨϩϪϫϬϭϮϯͿϳϷϸ'
        'ϺϻАаБбВᲀвГгДᲁдЕеЖжЗзИиКкЛлМмНнОᲂоПпРрСᲃс'
        'ТᲄᲅтУуФфХхЦцЧчШшЩщЪᲆъЫыЬьЭэЮюЯяЂђЄєЅѕІіЈ'
        'јЉљЊњЋћЏџѠѡѢᲇѣѤѥѦѧѨѩѪѫѬѭѮѯѰѱѲѳѴѵѸѹѺѻѼѽѾѿ'
        'ҀҁҊҋҌҍҎҏҐґҒғҔҕҖҗҘҙҚқҜҝҞҟҠҡҢңҤҥҦҧҨҩҪҫҬҭҮү'
        'ҰұҲҳҴҵҶҷҸҹҺһҼҽҾҿӃӄӅӆӇӈӉӊӋӌӍӎӀӏӔӕӘәӠӡӨөӶӷ'
        'ӺӻӼӽӾӿԀԁԂԃԄԅԆԇԈԉԊԋԌԍԎԏԐԑԒԓԔԕԖԗԘԙԚԛԜԝԞԟԠԡ'
        'ԢԣԤԥԦԧԨԩԪԫԬԭԮԯԱաԲբԳգԴդԵեԶզԷէԸըԹթԺժԻիԼլԽխ'
        'ԾծԿկՀհՁձՂղՃճՄմՅյՆնՇշՈոՉչՊպՋջՌռՍսՎվՏտՐրՑց'
        'ՒւՓփՔքՕօՖֆᲐაᲑბᲒგᲓდᲔეᲕვᲖზᲗთᲘიᲙკᲚლᲛმᲜნᲝოᲞპ'
        'ᲟჟᲠრᲡსᲢტᲣუᲤფᲥქᲦღᲧყᲨშᲩჩᲪცᲫძᲬწᲭჭᲮხᲯჯᲰჰᲱჱᲲჲ'
        'ᲳჳᲴჴᲵჵᲶჶᲷჷᲸჸᲹჹᲺჺᲽჽᲾჾᲿჿꭰᎠꭱᎡꭲᎢꭳᎣꭴᎤꭵᎥꭶᎦꭷᎧꭸᎨ'
        'ꭹᎩꭺᎪꭻᎫꭼᎬꭽᎭꭾᎮꭿᎯꮀᎰꮁᎱꮂᎲꮃᎳꮄᎴꮅᎵꮆᎶꮇᎷꮈᎸꮉᎹꮊᎺꮋᎻꮌᎼ'
        'ꮍᎽꮎᎾꮏᎿꮐᏀꮑᏁꮒᏂꮓᏃꮔᏄꮕᏅꮖᏆꮗᏇꮘᏈꮙᏉꮚᏊꮛᏋꮜᏌꮝᏍꮞᏎꮟᏏꮠᏐ'
        'ꮡᏑꮢᏒꮣᏓꮤᏔꮥᏕꮦᏖꮧᏗꮨᏘꮩᏙꮪᏚꮫᏛꮬᏜꮭᏝꮮᏞꮯᏟꮰᏠꮱᏡꮲᏢꮳᏣꮴᏤ'
        'ꮵᏥꮶᏦꮷᏧꮸᏨꮹᏩꮺᏪꮻᏫꮼᏬꮽᏭꮾᏮꮿᏯᏸᏰᏹᏱᏺᏲᏻᏳᏼᏴᏽᏵꝽᵹⱣᵽꟆᶎ'
        'ỺỻỼỽỾỿℲⅎↃↄⰀⰰⰁⰱⰂⰲⰃⰳⰄⰴⰅⰵⰆⰶⰇⰷⰈⰸⰉⰹⰊⰺⰋⰻⰌⰼⰍⰽⰎⰾ'
        'ⰏⰿⰐⱀⰑⱁⰒⱂⰓⱃⰔⱄⰕⱅⰖⱆⰗⱇⰘⱈⰙⱉⰚⱊⰛⱋⰜⱌⰝⱍⰞⱎⰟⱏⰠⱐⰡⱑⰢⱒ'
        'ⰣⱓⰤⱔⰥⱕⰦⱖⰧⱗⰨⱘⰩⱙⰪⱚⰫⱛⰬⱜⰭⱝⰮⱞⰯⱟⱠⱡȺⱥȾⱦⱧⱨⱩⱪⱫⱬⱲⱳ'
        'ⱵⱶⲀⲁⲂⲃⲄⲅⲆⲇⲈⲉⲊⲋⲌⲍⲎⲏⲐⲑⲒⲓⲔⲕⲖⲗⲘⲙⲚⲛⲜⲝⲞⲟⲠⲡⲢⲣⲤⲥ'
        'ⲦⲧⲨⲩⲪⲫⲬⲭⲮⲯⲰⲱⲲⲳⲴⲵⲶⲷⲸⲹⲺⲻⲼⲽⲾⲿⳀⳁⳂⳃⳄⳅⳆⳇⳈⳉⳊⳋⳌⳍ'
        'ⳎⳏⳐⳑⳒⳓⳔⳕⳖⳗⳘⳙⳚⳛⳜⳝⳞⳟⳠⳡⳢⳣⳫⳬⳭⳮⳲⳳႠⴀႡⴁႢⴂႣⴃႤⴄႥⴅ'
        'ႦⴆႧⴇႨⴈႩⴉႪⴊႫⴋႬⴌႭⴍႮⴎႯⴏႰⴐႱⴑႲⴒႳⴓႴⴔႵⴕႶⴖႷⴗႸⴘႹⴙ'
        'ႺⴚႻⴛႼⴜႽⴝႾⴞႿⴟჀⴠჁⴡჂⴢჃⴣჄⴤჅⴥჇⴧჍⴭꙀꙁꙂꙃꙄꙅꙆꙇꙈꙉᲈꙊ'
        'ꙋꙌꙍꙎꙏꙐꙑꙒꙓꙔꙕꙖꙗꙘꙙꙚꙛꙜꙝꙞꙟꙠꙡꙢꙣꙤꙥꙦꙧꙨꙩꙪꙫꙬꙭꚀꚁꚂꚃꚄ'
        'ꚅꚆꚇꚈꚉꚊꚋꚌꚍꚎꚏꚐꚑꚒꚓꚔꚕꚖꚗꚘꚙꚚꚛꜢꜣꜤꜥꜦꜧꜨꜩꜪꜫꜬꜭꜮꜯꜲꜳꜴ'
        'ꜵꜶꜷꜸꜹꜺꜻꜼꜽꜾꜿꝀꝁꝂꝃꝄꝅꝆꝇꝈꝉꝊꝋꝌꝍꝎꝏꝐꝑꝒꝓꝔꝕꝖꝗꝘꝙꝚꝛꝜ'
        'ꝝꝞꝟꝠꝡꝢꝣꝤꝥꝦꝧꝨꝩꝪꝫꝬꝭꝮꝯꝹꝺꝻꝼꝾꝿꞀꞁꞂꞃꞄꞅꞆꞇꞋꞌꞐꞑꞒꞓꟄ'
        'ꞔꞖꞗꞘꞙꞚꞛꞜꞝꞞꞟꞠꞡꞢꞣꞤꞥꞦꞧꞨꞩꞴꞵꞶꞷꞸꞹꞺꞻꞼꞽꞾꞿꟀꟁꟂꟃꟇꟈꟉ'
        'ꟊꟐꟑꟖꟗꟘꟙꟵꟶꞳꭓ𐐀𐐨𐐁𐐩𐐂𐐪𐐃𐐫𐐄𐐬𐐅𐐭𐐆𐐮𐐇𐐯𐐈𐐰𐐉𐐱𐐊𐐲𐐋𐐳𐐌𐐴𐐍𐐵𐐎'
        '𐐶𐐏𐐷𐐐𐐸𐐑𐐹𐐒𐐺𐐓𐐻𐐔𐐼𐐕𐐽𐐖𐐾𐐗𐐿𐐘𐑀𐐙𐑁𐐚𐑂𐐛𐑃𐐜𐑄𐐝𐑅𐐞𐑆𐐟𐑇𐐠𐑈𐐡𐑉𐐢'
        '𐑊𐐣𐑋𐐤𐑌𐐥𐑍𐐦𐑎𐐧𐑏𐒰𐓘𐒱𐓙𐒲𐓚𐒳𐓛𐒴𐓜𐒵𐓝𐒶𐓞𐒷𐓟𐒸𐓠𐒹𐓡𐒺𐓢𐒻𐓣𐒼𐓤𐒽𐓥𐒾'
        '𐓦𐒿𐓧𐓀𐓨𐓁𐓩𐓂𐓪𐓃𐓫𐓄𐓬𐓅𐓭𐓆𐓮𐓇𐓯𐓈𐓰𐓉𐓱𐓊𐓲𐓋𐓳𐓌𐓴𐓍𐓵𐓎𐓶𐓏𐓷𐓐𐓸𐓑𐓹𐓒'
        '𐓺𐓓𐓻𐕰𐖗𐕱𐖘𐕲𐖙𐕳𐖚𐕴𐖛𐕵𐖜𐕶𐖝𐕷𐖞𐕸𐖟𐕹𐖠𐕺𐖡𐕼𐖣𐕽𐖤𐕾𐖥𐕿𐖦𐖀𐖧𐖁𐖨𐖂𐖩𐖃'
        '𐖪𐖄𐖫𐖅𐖬𐖆𐖭𐖇𐖮𐖈𐖯𐖉𐖰𐖊𐖱𐖌𐖳𐖍𐖴𐖎𐖵𐖏𐖶𐖐𐖷𐖑𐖸𐖒𐖹𐖔𐖻𐖕𐖼𐲀𐳀𐲁𐳁𐲂𐳂𐲃'
        '𐳃𐲄𐳄𐲅𐳅𐲆𐳆𐲇𐳇𐲈𐳈𐲉𐳉𐲊𐳊𐲋𐳋𐲌𐳌𐲍𐳍𐲎𐳎𐲏𐳏𐲐𐳐𐲑𐳑𐲒𐳒𐲓𐳓𐲔𐳔𐲕𐳕𐲖𐳖𐲗'
        '𐳗𐲘𐳘𐲙𐳙𐲚𐳚𐲛𐳛𐲜𐳜𐲝𐳝𐲞𐳞𐲟𐳟𐲠𐳠𐲡𐳡𐲢𐳢𐲣𐳣𐲤𐳤𐲥𐳥𐲦𐳦𐲧𐳧𐲨𐳨𐲩𐳩𐲪𐳪𐲫'
        '𐳫𐲬𐳬𐲭𐳭𐲮𐳮𐲯𐳯𐲰𐳰𐲱𐳱𐲲𐳲𑢠𑣀𑢡𑣁𑢢𑣂𑢣𑣃𑢤𑣄𑢥𑣅𑢦𑣆𑢧𑣇𑢨𑣈𑢩𑣉𑢪𑣊𑢫𑣋𑢬'
        '𑣌𑢭𑣍𑢮𑣎𑢯𑣏𑢰𑣐𑢱𑣑𑢲𑣒𑢳𑣓𑢴𑣔𑢵𑣕𑢶𑣖𑢷𑣗𑢸𑣘𑢹𑣙𑢺𑣚𑢻𑣛𑢼𑣜𑢽𑣝𑢾𑣞𑢿𑣟𖹀'
        '𖹠𖹁𖹡𖹂𖹢𖹃𖹣𖹄𖹤𖹅𖹥𖹆𖹦𖹇𖹧𖹈𖹨𖹉𖹩𖹊𖹪𖹋𖹫𖹌𖹬𖹍𖹭𖹎𖹮𖹏𖹯𖹐𖹰𖹑𖹱𖹒𖹲𖹓𖹳𖹔'
        '𖹴𖹕𖹵𖹖𖹶𖹗𖹷𖹘𖹸𖹙𖹹𖹚𖹺𖹛𖹻𖹜𖹼𖹝𖹽𖹞𖹾𖹟𖹿𞤀𞤢𞤁𞤣𞤂𞤤𞤃𞤥𞤄𞤦𞤅𞤧𞤆𞤨𞤇𞤩𞤈'
        '𞤪𞤉𞤫𞤊𞤬𞤋𞤭𞤌𞤮𞤍𞤯𞤎𞤰𞤏𞤱𞤐𞤲𞤑𞤳𞤒𞤴𞤓𞤵𞤔𞤶𞤕𞤷𞤖𞤸𞤗𞤹𞤘𞤺𞤙𞤻𞤚𞤼𞤛𞤽𞤜'
        '𞤾𞤝𞤿𞤞𞥀𞤟𞥁𞤠𞥂𞤡𞥃',
        '0123456789.@_+- aabbccddeeffgghhiijjkkll'
        'mmnnooppqqrrssttuuvvwwxxyyzzææððøøþþđđħħ'
        'łłŋŋœœŧŧƀƀƃƃƅƅƈƈƌƌƒƒƕƕƙƙƚƚƞƞƣƣƥƥƨƨƭƭƴƴƶƶ'
        'ƹƹƽƽƿƿǝǝǥǥȝȝȣȣȥȥȼȼȿȿɀɀɂɂɇɇɉɉɋɋɍɍɏɏɐɐɑɑɒɒ'
        'ɓɓɔɔɖɖɗɗəəɛɛɜɜɠɠɡɡɣɣɥɥɦɦɨɨɩɩɪɪɫɫɬɬɯɯɱɱɲɲ'
        'ɵɵɽɽʀʀʂʂʃʃʇʇʈʈʉʉʊʊʋʋʌʌʒʒʝʝʞʞͱͱͳͳͷͷͻͻͼͼͽͽ'
        'ααββγγδδεεζζηηθθιιικκλλμμννξξοοππρρσσσττ'
        'υυφφχχψψωωϗϗϙϙϛϛϝϝϟϟϡϡϣϣϥϥϧϧϩϩϫϫϭϭϯϯϳϳϸϸ'
        'ϻϻааббвввггдддеежжззииккллммнноооппррссс'
        'ттттууффххццччшшщщъъъыыььээююяяђђєєѕѕііј'
        'јљљњњћћџџѡѡѣѣѣѥѥѧѧѩѩѫѫѭѭѯѯѱѱѳѳѵѵѹѹѻѻѽѽѿѿ'
        'ҁҁҋҋҍҍҏҏґґғғҕҕҗҗҙҙққҝҝҟҟҡҡңңҥҥҧҧҩҩҫҫҭҭүү'
        'ұұҳҳҵҵҷҷҹҹһһҽҽҿҿӄӄӆӆӈӈӊӊӌӌӎӎӏӏӕӕәәӡӡөөӷӷ'
        'ӻӻӽӽӿӿԁԁԃԃԅԅԇԇԉԉԋԋԍԍԏԏԑԑԓԓԕԕԗԗԙԙԛԛԝԝԟԟԡԡ'
        'ԣԣԥԥԧԧԩԩԫԫԭԭԯԯաաբբգգդդեեզզէէըըթթժժիիլլխխ'
        'ծծկկհհձձղղճճմմյյննշշոոչչպպջջռռսսվվտտրրցց'
        'ււփփքքօօֆֆააბბგგდდეევვზზთთიიკკლლმმნნოოპპ'
        'ჟჟრრსსტტუუფფქქღღყყშშჩჩცცძძწწჭჭხხჯჯჰჰჱჱჲჲ'
        'ჳჳჴჴჵჵჶჶჷჷჸჸჹჹჺჺჽჽჾჾჿჿᎠᎠᎡᎡᎢᎢᎣᎣᎤᎤᎥᎥᎦᎦᎧᎧᎨᎨ'
        'ᎩᎩᎪᎪᎫᎫᎬᎬᎭᎭᎮᎮᎯᎯᎰᎰᎱᎱᎲᎲᎳᎳᎴᎴᎵᎵᎶᎶᎷᎷᎸᎸᎹᎹᎺᎺᎻᎻᎼᎼ'
        'ᎽᎽᎾᎾᎿᎿᏀᏀᏁᏁᏂᏂᏃᏃᏄᏄᏅᏅᏆᏆᏇᏇᏈᏈᏉᏉᏊᏊᏋᏋᏌᏌᏍᏍᏎᏎᏏᏏᏐᏐ'
        'ᏑᏑᏒᏒᏓᏓᏔᏔᏕᏕᏖᏖᏗᏗᏘᏘᏙᏙᏚᏚᏛᏛᏜᏜᏝᏝᏞᏞᏟᏟᏠᏠᏡᏡᏢᏢᏣᏣᏤᏤ'
        'ᏥᏥᏦᏦᏧᏧᏨᏨᏩᏩᏪᏪᏫᏫᏬᏬᏭᏭᏮᏮᏯᏯᏰᏰᏱᏱᏲᏲᏳᏳᏴᏴᏵᏵᵹᵹᵽᵽᶎᶎ'
        'ỻỻỽỽỿỿⅎⅎↄↄⰰⰰⰱⰱⰲⰲⰳⰳⰴⰴⰵⰵⰶⰶⰷⰷⰸⰸⰹⰹⰺⰺⰻⰻⰼⰼⰽⰽⰾⰾ'
        'ⰿⰿⱀⱀⱁⱁⱂⱂⱃⱃⱄⱄⱅⱅⱆⱆⱇⱇⱈⱈⱉⱉⱊⱊⱋⱋⱌⱌⱍⱍⱎⱎⱏⱏⱐⱐⱑⱑⱒⱒ'
        'ⱓⱓⱔⱔⱕⱕⱖⱖⱗⱗⱘⱘⱙⱙⱚⱚⱛⱛⱜⱜⱝⱝⱞⱞⱟⱟⱡⱡⱥⱥⱦⱦⱨⱨⱪⱪⱬⱬⱳⱳ'
        'ⱶⱶⲁⲁⲃⲃⲅⲅⲇⲇⲉⲉⲋⲋⲍⲍⲏⲏⲑⲑⲓⲓⲕⲕⲗⲗⲙⲙⲛⲛⲝⲝⲟⲟⲡⲡⲣⲣⲥⲥ'
        'ⲧⲧⲩⲩⲫⲫⲭⲭⲯⲯⲱⲱⲳⲳⲵⲵⲷⲷⲹⲹⲻⲻⲽⲽⲿⲿⳁⳁⳃⳃⳅⳅⳇⳇⳉⳉⳋⳋⳍⳍ'
        'ⳏⳏⳑⳑⳓⳓⳕⳕⳗⳗⳙⳙⳛⳛⳝⳝⳟⳟⳡⳡⳣⳣⳬⳬⳮⳮⳳⳳⴀⴀⴁⴁⴂⴂⴃⴃⴄⴄⴅⴅ'
        'ⴆⴆⴇⴇⴈⴈⴉⴉⴊⴊⴋⴋⴌⴌⴍⴍⴎⴎⴏⴏⴐⴐⴑⴑⴒⴒⴓⴓⴔⴔⴕⴕⴖⴖⴗⴗⴘⴘⴙⴙ'
        'ⴚⴚⴛⴛⴜⴜⴝⴝⴞⴞⴟⴟⴠⴠⴡⴡⴢⴢⴣⴣⴤⴤⴥⴥⴧⴧⴭⴭꙁꙁꙃꙃꙅꙅꙇꙇꙉꙉꙋꙋ'
        'ꙋꙍꙍꙏꙏꙑꙑꙓꙓꙕꙕꙗꙗꙙꙙꙛꙛꙝꙝꙟꙟꙡꙡꙣꙣꙥꙥꙧꙧꙩꙩꙫꙫꙭꙭꚁꚁꚃꚃꚅ'
        'ꚅꚇꚇꚉꚉꚋꚋꚍꚍꚏꚏꚑꚑꚓꚓꚕꚕꚗꚗꚙꚙꚛꚛꜣꜣꜥꜥꜧꜧꜩꜩꜫꜫꜭꜭꜯꜯꜳꜳꜵ'
        'ꜵꜷꜷꜹꜹꜻꜻꜽꜽꜿꜿꝁꝁꝃꝃꝅꝅꝇꝇꝉꝉꝋꝋꝍꝍꝏꝏꝑꝑꝓꝓꝕꝕꝗꝗꝙꝙꝛꝛꝝ'
        'ꝝꝟꝟꝡꝡꝣꝣꝥꝥꝧꝧꝩꝩꝫꝫꝭꝭꝯꝯꝺꝺꝼꝼꝿꝿꞁꞁꞃꞃꞅꞅꞇꞇꞌꞌꞑꞑꞓꞓꞔ'
        'ꞔꞗꞗꞙꞙꞛꞛꞝꞝꞟꞟꞡꞡꞣꞣꞥꞥꞧꞧꞩꞩꞵꞵꞷꞷꞹꞹꞻꞻꞽꞽꞿꞿꟁꟁꟃꟃꟈꟈꟊ'
        'ꟊꟑꟑꟗꟗꟙꟙꟶꟶꭓꭓ𐐨𐐨𐐩𐐩𐐪𐐪𐐫𐐫𐐬𐐬𐐭𐐭𐐮𐐮𐐯𐐯𐐰𐐰𐐱𐐱𐐲𐐲𐐳𐐳𐐴𐐴𐐵𐐵𐐶'
        '𐐶𐐷𐐷𐐸𐐸𐐹𐐹𐐺𐐺𐐻𐐻𐐼𐐼𐐽𐐽𐐾𐐾𐐿𐐿𐑀𐑀𐑁𐑁𐑂𐑂𐑃𐑃𐑄𐑄𐑅𐑅𐑆𐑆𐑇𐑇𐑈𐑈𐑉𐑉𐑊'
        '𐑊𐑋𐑋𐑌𐑌𐑍𐑍𐑎𐑎𐑏𐑏𐓘𐓘𐓙𐓙𐓚𐓚𐓛𐓛𐓜𐓜𐓝𐓝𐓞𐓞𐓟𐓟𐓠𐓠𐓡𐓡𐓢𐓢𐓣𐓣𐓤𐓤𐓥𐓥𐓦'
        '𐓦𐓧𐓧𐓨𐓨𐓩𐓩𐓪𐓪𐓫𐓫𐓬𐓬𐓭𐓭𐓮𐓮𐓯𐓯𐓰𐓰𐓱𐓱𐓲𐓲𐓳𐓳𐓴𐓴𐓵𐓵𐓶𐓶𐓷𐓷𐓸𐓸𐓹𐓹𐓺'
        '𐓺𐓻𐓻𐖗𐖗𐖘𐖘𐖙𐖙𐖚𐖚𐖛𐖛𐖜𐖜𐖝𐖝𐖞𐖞𐖟𐖟𐖠𐖠𐖡𐖡𐖣𐖣𐖤𐖤𐖥𐖥𐖦𐖦𐖧𐖧𐖨𐖨𐖩𐖩𐖪'
        '𐖪𐖫𐖫𐖬𐖬𐖭𐖭𐖮𐖮𐖯𐖯𐖰𐖰𐖱𐖱𐖳𐖳𐖴𐖴𐖵𐖵𐖶𐖶𐖷𐖷𐖸𐖸𐖹𐖹𐖻𐖻𐖼𐖼𐳀𐳀𐳁𐳁𐳂𐳂𐳃'
        '𐳃𐳄𐳄𐳅𐳅𐳆𐳆𐳇𐳇𐳈𐳈𐳉𐳉𐳊𐳊𐳋𐳋𐳌𐳌𐳍𐳍𐳎𐳎𐳏𐳏𐳐𐳐𐳑𐳑𐳒𐳒𐳓𐳓𐳔𐳔𐳕𐳕𐳖𐳖𐳗'
        '𐳗𐳘𐳘𐳙𐳙𐳚𐳚𐳛𐳛𐳜𐳜𐳝𐳝𐳞𐳞𐳟𐳟𐳠𐳠𐳡𐳡𐳢𐳢𐳣𐳣𐳤𐳤𐳥𐳥𐳦𐳦𐳧𐳧𐳨𐳨𐳩𐳩𐳪𐳪𐳫'
        '𐳫𐳬𐳬𐳭𐳭𐳮𐳮𐳯𐳯𐳰𐳰𐳱𐳱𐳲𐳲𑣀𑣀𑣁𑣁𑣂𑣂𑣃𑣃𑣄𑣄𑣅𑣅𑣆𑣆𑣇𑣇𑣈𑣈𑣉𑣉𑣊𑣊𑣋𑣋𑣌'
        '𑣌𑣍𑣍𑣎𑣎𑣏𑣏𑣐𑣐𑣑𑣑𑣒𑣒𑣓𑣓𑣔𑣔𑣕𑣕𑣖𑣖𑣗𑣗𑣘𑣘𑣙𑣙𑣚𑣚𑣛𑣛𑣜𑣜𑣝𑣝𑣞𑣞𑣟𑣟𖹠'
        '𖹠𖹡𖹡𖹢𖹢𖹣𖹣𖹤𖹤𖹥𖹥𖹦𖹦𖹧𖹧𖹨𖹨𖹩𖹩𖹪𖹪𖹫𖹫𖹬𖹬𖹭𖹭𖹮𖹮𖹯𖹯𖹰𖹰𖹱𖹱𖹲𖹲𖹳𖹳𖹴'
        '𖹴𖹵𖹵𖹶𖹶𖹷𖹷𖹸𖹸𖹹𖹹𖹺𖹺𖹻𖹻𖹼𖹼𖹽𖹽𖹾𖹾𖹿𖹿𞤢𞤢𞤣𞤣𞤤𞤤𞤥𞤥𞤦𞤦𞤧𞤧𞤨𞤨𞤩𞤩𞤪'
        '𞤪𞤫𞤫𞤬𞤬𞤭𞤭𞤮𞤮𞤯𞤯𞤰𞤰𞤱𞤱𞤲𞤲𞤳𞤳𞤴𞤴𞤵𞤵𞤶𞤶𞤷𞤷𞤸𞤸𞤹𞤹𞤺𞤺𞤻𞤻𞤼𞤼𞤽𞤽𞤾'
        '𞤾𞤿𞤿𞥀𞥀𞥁𞥁𞥂𞥂𞥃𞥃'
    ), NFKC)
    END;
END
$fold$;

-- Rows that the new rule makes duplicates (ÉLODIE@… beside élodie@…) must be resolved by a
-- person before the indexes can be built: stop here, naming the query that lists them. An
-- index left INVALID by an earlier run that failed while building it enforces nothing, and
-- CREATE INDEX IF NOT EXISTS would keep it: drop it so that the run builds it again.
DO $$
DECLARE
    clashes bigint;
    leftover text;
BEGIN
    SELECT count(*) INTO clashes
    FROM (SELECT FROM users GROUP BY coderunner_fold(email) HAVING count(*) > 1) AS taken;
    IF clashes > 0 THEN
        RAISE EXCEPTION '% email(s) belong to more than one user once letter case is folded; '
            'list them with: SELECT coderunner_fold(email), array_agg(email) FROM users '
            'GROUP BY 1 HAVING count(*) > 1', clashes;
    END IF;
    SELECT count(*) INTO clashes
    FROM (
        SELECT FROM projects GROUP BY user_id, coderunner_fold(name) HAVING count(*) > 1
    ) AS taken;
    IF clashes > 0 THEN
        RAISE EXCEPTION '% project name(s) are used twice by one user once letter case is '
            'folded; list them with: SELECT user_id, coderunner_fold(name), array_agg(name) '
            'FROM projects GROUP BY 1, 2 HAVING count(*) > 1', clashes;
    END IF;
    FOREACH leftover IN ARRAY ARRAY['users_email_fold_key', 'projects_user_name_fold_key'] LOOP
        IF EXISTS (
            SELECT FROM pg_catalog.pg_index
            WHERE indexrelid = to_regclass(leftover) AND NOT indisvalid
        ) THEN
            EXECUTE format('DROP INDEX %I', leftover);
        END IF;
    END LOOP;
END
$$;

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_fold_key
    ON users (coderunner_fold(email));

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS projects_user_name_fold_key
    ON projects (user_id, coderunner_fold(name));

DROP INDEX CONCURRENTLY IF EXISTS users_email_lower_key;

DROP INDEX CONCURRENTLY IF EXISTS projects_user_name_lower_key;
